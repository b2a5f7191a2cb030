-- no-transaction
-- Compute provider access, deep access (compute-provider-access §4): the `provider` plugin
-- kind, offerings of compute resources and the orders that provision them.
--
-- SQLite cannot change a CHECK constraint in place: the three plugin tables are rebuilt with
-- 'provider' among their kinds. That needs foreign keys off (other tables reference them),
-- which SQLite allows only outside a transaction, hence `no-transaction` above and the
-- explicit transaction below; foreign_key_check verifies the result before the commit.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE plugin_versions_new (
    plugin_id        TEXT NOT NULL,
    version          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('billing', 'policy', 'adapter', 'provider')),
    wit_version      TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    publisher        TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    description      TEXT NOT NULL,
    manifest         TEXT NOT NULL,
    package          BLOB NOT NULL,
    installed_by     TEXT NOT NULL,
    installed_at     INTEGER NOT NULL,
    CONSTRAINT plugin_versions_pkey PRIMARY KEY (plugin_id, version)
);
INSERT INTO plugin_versions_new SELECT plugin_id, version, kind, wit_version, component_sha256,
    publisher, key_id, description, manifest, package, installed_by, installed_at
    FROM plugin_versions;
DROP TABLE plugin_versions;
ALTER TABLE plugin_versions_new RENAME TO plugin_versions;

CREATE TABLE plugins_new (
    plugin_id      TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('billing', 'policy', 'adapter', 'provider')),
    active_version TEXT NOT NULL,
    enabled        INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    updated_at     INTEGER NOT NULL,
    CONSTRAINT plugins_active_version_fkey FOREIGN KEY (plugin_id, active_version)
        REFERENCES plugin_versions (plugin_id, version)
);
INSERT INTO plugins_new SELECT plugin_id, kind, active_version, enabled, updated_at FROM plugins;
DROP TABLE plugins;
ALTER TABLE plugins_new RENAME TO plugins;

CREATE TABLE plugin_defaults_new (
    kind      TEXT PRIMARY KEY CHECK (kind IN ('billing', 'policy', 'adapter', 'provider')),
    plugin_id TEXT NOT NULL CONSTRAINT plugin_defaults_plugin_fkey REFERENCES plugins (plugin_id)
);
INSERT INTO plugin_defaults_new SELECT kind, plugin_id FROM plugin_defaults;
DROP TABLE plugin_defaults;
ALTER TABLE plugin_defaults_new RENAME TO plugin_defaults;

-- Offerings of certified provider enterprises: a resource type in a region, its spec (JSON),
-- its price per hour (per GiB-month for storage services) in minor units, and the provider
-- plugin (with its per-offering config) that provisions it.
CREATE TABLE compute_offerings (
    id                  TEXT PRIMARY KEY,
    provider_account_id TEXT NOT NULL REFERENCES accounts (id),
    resource_type       TEXT NOT NULL CHECK (resource_type IN ('cloud_host', 'bare_metal', 'file_service', 'storage_service')),
    region              TEXT NOT NULL,
    spec                TEXT NOT NULL,
    price_minor         INTEGER NOT NULL CHECK (price_minor >= 0),
    plugin_id           TEXT NOT NULL,
    config              TEXT NOT NULL,
    code                TEXT,
    created_at          INTEGER NOT NULL
);
CREATE INDEX compute_offerings_provider_idx ON compute_offerings (provider_account_id, created_at);

-- Orders and their lifecycle (domain::compute::OrderState). client_token is the provider's
-- idempotency token, fixed at creation: every provisioning attempt, before and after a
-- restart, sends the same one. The worker takes due rows (next_attempt_at) under a lease.
-- held_minor: what the order has held of the user's balance (prepaid periods); paid_periods:
-- how many periods that covers. suspended_at: stopped because the balance ran out.
CREATE TABLE compute_orders (
    id                   TEXT PRIMARY KEY,
    offering_id          TEXT NOT NULL REFERENCES compute_offerings (id),
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    idempotency_key      TEXT NOT NULL,
    client_token         TEXT NOT NULL,
    spec                 TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('REQUESTED', 'PROVISIONING', 'ACTIVE', 'RECLAIMING', 'RECLAIMED', 'FAILED')),
    provider_resource_id TEXT,
    resource_state       TEXT,
    endpoint             TEXT,
    error                TEXT,
    attempts             INTEGER NOT NULL,
    next_attempt_at      INTEGER NOT NULL,
    held_minor           INTEGER NOT NULL,
    charged_minor        INTEGER NOT NULL,
    paid_periods         INTEGER NOT NULL,
    suspended_at         INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    active_at            INTEGER,
    ended_at             INTEGER,
    CONSTRAINT compute_orders_idempotency_key UNIQUE (account_id, idempotency_key)
);
CREATE INDEX compute_orders_due_idx ON compute_orders (state, next_attempt_at);
CREATE INDEX compute_orders_account_idx ON compute_orders (account_id, created_at);

COMMIT;
PRAGMA foreign_keys = ON;
