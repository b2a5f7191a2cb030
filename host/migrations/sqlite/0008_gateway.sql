-- The identifier gateway (compute-provider-access §3), platform side: the Ed25519 keys
-- enterprises sign their gateway batches with, every reported observation of an identifier,
-- and the current state of each identifier (its latest observation). Times are Unix
-- milliseconds; unit_price is in minor units (fen per hour).

-- An enterprise's gateway keys. Registering a new key retires the active one (explicit
-- rotation): from then on only the new key verifies, so a stolen old key stops working.
CREATE TABLE gateway_keys (
    key_id        TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    enterprise_id TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER
);
-- One active key per enterprise: concurrent registrations race here and one wins.
CREATE UNIQUE INDEX gateway_keys_active_key ON gateway_keys (enterprise_id) WHERE retired_at IS NULL;

-- Every observation ever accepted. (code, observed_at) is the idempotency key: a batch sent
-- twice adds nothing the second time.
CREATE TABLE gateway_observations (
    code           TEXT NOT NULL,
    observed_at    INTEGER NOT NULL,
    enterprise_id  TEXT NOT NULL,
    resource_class TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    province       TEXT NOT NULL,
    city           TEXT NOT NULL,
    zone           TEXT NOT NULL,
    cpu_cores      INTEGER,
    cpu_model      TEXT,
    gpu_model      TEXT,
    gpu_count      INTEGER,
    memory_gib     REAL,
    storage_gib    REAL,
    bandwidth_mbps REAL,
    status         TEXT NOT NULL,
    unit_price     INTEGER,
    received_at    INTEGER NOT NULL,
    key_id         TEXT NOT NULL,
    PRIMARY KEY (code, observed_at)
);

-- The current state of each identifier: its latest observation (the greatest observed_at
-- wins, whatever order batches arrive in), and whether an operator deactivated it.
CREATE TABLE gateway_identifiers (
    code           TEXT PRIMARY KEY,
    observed_at    INTEGER NOT NULL,
    enterprise_id  TEXT NOT NULL,
    resource_class TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    province       TEXT NOT NULL,
    city           TEXT NOT NULL,
    zone           TEXT NOT NULL,
    cpu_cores      INTEGER,
    cpu_model      TEXT,
    gpu_model      TEXT,
    gpu_count      INTEGER,
    memory_gib     REAL,
    storage_gib    REAL,
    bandwidth_mbps REAL,
    status         TEXT NOT NULL,
    unit_price     INTEGER,
    received_at    INTEGER NOT NULL,
    deactivated_at INTEGER,
    deactivated_by TEXT REFERENCES accounts (id)
);
-- Listings are newest observation first (observed_at, then code), filtered by enterprise,
-- province or city: each of those gets an index in listing order, so a page is read off an
-- index without sorting; type, class and status are few-valued and filter along the time index.
CREATE INDEX gateway_identifiers_observed_idx ON gateway_identifiers (observed_at, code);
CREATE INDEX gateway_identifiers_enterprise_idx ON gateway_identifiers (enterprise_id, observed_at, code);
CREATE INDEX gateway_identifiers_province_idx ON gateway_identifiers (province, observed_at, code);
CREATE INDEX gateway_identifiers_city_idx ON gateway_identifiers (city, observed_at, code);
