-- Trading (A.3): delivery keys and files, confirmations, the double-entry ledger, settlements,
-- licenses and deliveries. Times are Unix milliseconds, money integer minor units, documents
-- JSON text exactly as signed.

-- Usage restrictions a provider publishes with its terms (JSON); NULL means the default.
ALTER TABLE resources ADD COLUMN usage_restrictions TEXT;

-- A buyer's own age recipient; delivery keys are re-encrypted to it at settlement.
CREATE TABLE account_delivery_keys (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id),
    recipient  TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A provider's delivery identity, stored only sealed to the operator's escrow recipient.
CREATE TABLE resource_delivery_keys (
    resource_id TEXT PRIMARY KEY REFERENCES resources (id),
    sealed      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The encrypted data file a provider uploaded, in the object store under object_key.
CREATE TABLE resource_files (
    resource_id TEXT PRIMARY KEY REFERENCES resources (id),
    object_key  TEXT NOT NULL,
    size        BIGINT NOT NULL CHECK (size >= 0),
    sha256      TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL
);

-- status: confirmed (waiting for settlement until expires_at), settled, expired.
CREATE TABLE confirmations (
    id                 TEXT PRIMARY KEY,
    demand_id          TEXT NOT NULL REFERENCES demands (id),
    resource_id        TEXT NOT NULL REFERENCES resources (id),
    registration_id    TEXT NOT NULL,
    data_id            TEXT NOT NULL,
    controlled         BIGINT NOT NULL CHECK (controlled IN (0, 1)),
    seller_account_id  TEXT NOT NULL REFERENCES accounts (id),
    seller_name        TEXT NOT NULL,
    buyer_account_id   TEXT NOT NULL REFERENCES accounts (id),
    buyer_name         TEXT NOT NULL,
    price_minor        BIGINT NOT NULL CHECK (price_minor >= 0),
    usage_restrictions TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('confirmed', 'settled', 'expired')),
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    settled_at         BIGINT
);
-- A demand has at most one live (confirmed or settled) confirmation: this index is the lock.
CREATE UNIQUE INDEX confirmations_live_demand_key ON confirmations (demand_id)
    WHERE status IN ('confirmed', 'settled');
CREATE INDEX confirmations_resource_idx ON confirmations (resource_id);

-- Double-entry ledger. Every transaction's entries sum to zero; balances are the running sum
-- of an account's entries. kind 'user' balances never go below zero; 'system' ones (funding,
-- platform fees) may.
CREATE TABLE ledger_balances (
    account TEXT PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('user', 'system')),
    balance BIGINT NOT NULL,
    CONSTRAINT ledger_balances_non_negative CHECK (kind = 'system' OR balance >= 0)
);

CREATE TABLE ledger_transactions (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('credit', 'settlement')),
    reference  TEXT NOT NULL,
    request    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT ledger_transactions_reference_key UNIQUE (kind, reference)
);

CREATE TABLE ledger_entries (
    transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
    account        TEXT NOT NULL REFERENCES ledger_balances (account),
    amount         BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, account)
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account);

CREATE TABLE settlements (
    confirm_id            TEXT PRIMARY KEY REFERENCES confirmations (id),
    receipt_id            TEXT NOT NULL,
    ledger_transaction_id TEXT NOT NULL REFERENCES ledger_transactions (id),
    amount_minor          BIGINT NOT NULL CHECK (amount_minor >= 0),
    payment_proof         TEXT NOT NULL,
    private_key           TEXT,
    settled_at            BIGINT NOT NULL,
    CONSTRAINT settlements_ledger_transaction_key UNIQUE (ledger_transaction_id)
);

-- Licenses as issued (document = the signed JSON). A re-issued license supersedes the old one.
CREATE TABLE licenses (
    id                  TEXT PRIMARY KEY,
    confirm_id          TEXT NOT NULL REFERENCES confirmations (id),
    resource_id         TEXT NOT NULL REFERENCES resources (id),
    licensee_account_id TEXT NOT NULL REFERENCES accounts (id),
    document            TEXT NOT NULL,
    starts_at           BIGINT NOT NULL,
    ends_at             BIGINT NOT NULL,
    issued_at           BIGINT NOT NULL,
    superseded_by       TEXT REFERENCES licenses (id),
    superseded_at       BIGINT
);
CREATE INDEX licenses_resource_idx ON licenses (resource_id);
CREATE INDEX licenses_confirm_idx ON licenses (confirm_id);

CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    confirm_id   TEXT NOT NULL REFERENCES confirmations (id),
    license_id   TEXT NOT NULL REFERENCES licenses (id),
    proof        TEXT NOT NULL,
    delivered_at BIGINT NOT NULL
);
CREATE INDEX deliveries_confirm_idx ON deliveries (confirm_id);
