-- Accounts, tokens, supply, demand and the keyword-matching index.
-- Times are Unix milliseconds, money integer minor units, flags 0/1, lists JSON text.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    phone         TEXT,
    role          TEXT NOT NULL CHECK (role IN ('enterprise', 'operator', 'data_space')),
    created_at    INTEGER NOT NULL,
    CONSTRAINT accounts_username_key UNIQUE (username)
);

CREATE TABLE auth_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX auth_tokens_expires_idx ON auth_tokens (expires_at);

CREATE TABLE resources (
    id                TEXT PRIMARY KEY,
    registration_id   TEXT NOT NULL,
    data_id           TEXT NOT NULL,
    owner_account_id  TEXT NOT NULL REFERENCES accounts (id),
    owner_name        TEXT NOT NULL,
    controlled        INTEGER NOT NULL CHECK (controlled IN (0, 1)),
    key_words         TEXT NOT NULL,
    description       TEXT,
    data_type         TEXT NOT NULL,
    data_format       TEXT,
    data_size         REAL,
    data_category     TEXT NOT NULL,
    collection_time   TEXT,
    country           TEXT,
    provider_url      TEXT,
    resource_url      TEXT,
    ownership_confirm TEXT,
    public_key        TEXT,
    subscribe_confirm TEXT,
    protocol          TEXT,
    is_open           INTEGER,
    source            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('registered', 'published', 'revoked')),
    free              INTEGER CHECK (free IN (0, 1)),
    price_minor       INTEGER CHECK (price_minor >= 0),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT resources_registration_data_key UNIQUE (registration_id, data_id),
    CONSTRAINT resources_owner_data_key UNIQUE (owner_name, data_id)
);

CREATE TABLE demands (
    id                  TEXT PRIMARY KEY,
    demander_account_id TEXT NOT NULL REFERENCES accounts (id),
    demander_name       TEXT NOT NULL,
    data_category       TEXT NOT NULL,
    key_words           TEXT NOT NULL,
    description         TEXT,
    data_type           TEXT NOT NULL,
    subscribe_confirm   TEXT,
    status              TEXT NOT NULL CHECK (status IN ('registered', 'published', 'revoked')),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX demands_demander_idx ON demands (demander_account_id);

-- Holds the normalised terms of published items only: publishing inserts, revoking deletes.
-- field: 'k' keyword, 'c' category, 'd' description term.
CREATE TABLE match_terms (
    side      TEXT NOT NULL CHECK (side IN ('resource', 'demand')),
    data_type TEXT NOT NULL,
    field     TEXT NOT NULL CHECK (field IN ('k', 'c', 'd')),
    term      TEXT NOT NULL,
    item_id   TEXT NOT NULL,
    PRIMARY KEY (side, data_type, field, term, item_id)
) WITHOUT ROWID;
CREATE INDEX match_terms_item_idx ON match_terms (side, item_id);
