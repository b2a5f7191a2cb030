-- Model and application subscriptions (A.4, A.5): publications, orders (a subscription with
-- its signed license), and one charge row per call or paid term, which is also the usage
-- record. Times are Unix milliseconds, money integer minor units.

-- The ledger learns the subscription transaction kinds: a hold before an upstream call, the
-- usage that replaces it, its release when the call fails, a paid fixed term, a provider's
-- payout.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('credit', 'settlement', 'hold', 'usage', 'release', 'term', 'payout'));

CREATE TABLE publications (
    id                   TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL CHECK (kind IN ('model', 'application')),
    resource_id          TEXT NOT NULL REFERENCES resources (id),
    data_id              TEXT NOT NULL,
    publisher_account_id TEXT NOT NULL REFERENCES accounts (id),
    publisher_name       TEXT NOT NULL,
    billing_type         TEXT NOT NULL CHECK (billing_type IN ('fixed_term', 'metered')),
    unit                 TEXT NOT NULL CHECK (unit IN ('calls', 'tokens', 'duration')),
    price_minor          BIGINT NOT NULL CHECK (price_minor >= 0),
    term_days            BIGINT,
    -- The billingMethod as published (JSON), and the billing plugin with its config.
    billing_method       TEXT NOT NULL,
    billing_plugin       TEXT,
    billing_config       TEXT NOT NULL,
    -- A.4.1 api / A.5.1 url, and the adapter plugin that calls it with its config.
    endpoint             TEXT NOT NULL,
    adapter              TEXT NOT NULL,
    adapter_config       TEXT NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX publications_kind_idx ON publications (kind, created_at);

CREATE TABLE subscription_orders (
    id                    TEXT PRIMARY KEY,
    publication_id        TEXT NOT NULL REFERENCES publications (id),
    subscriber_account_id TEXT NOT NULL REFERENCES accounts (id),
    subscriber_name       TEXT NOT NULL,
    license_id            TEXT NOT NULL,
    -- The signed license, exactly as issued.
    license               TEXT NOT NULL,
    starts_at             BIGINT NOT NULL,
    ends_at               BIGINT NOT NULL CHECK (ends_at > starts_at),
    -- fixed_term: the end of the paid terms (NULL before the first payment).
    paid_until            BIGINT,
    created_at            BIGINT NOT NULL,
    CONSTRAINT subscription_orders_license_key UNIQUE (license_id)
);
CREATE INDEX subscription_orders_publication_idx ON subscription_orders (publication_id);
CREATE INDEX subscription_orders_subscriber_idx ON subscription_orders (subscriber_account_id);

-- One row per metered or fixed-term call (kind 'call') and per paid term (kind 'term'): the
-- usage record and its money. A call is 'held' while its upstream runs, then 'charged' or
-- 'failed'. (order_id, idempotency_key) makes a retried call find the first one.
CREATE TABLE subscription_charges (
    id               TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL REFERENCES subscription_orders (id),
    kind             TEXT NOT NULL CHECK (kind IN ('call', 'term')),
    status           TEXT NOT NULL CHECK (status IN ('held', 'charged', 'failed')),
    idempotency_key  TEXT,
    term             BIGINT,
    at               BIGINT NOT NULL,
    finished_at      BIGINT,
    calls            BIGINT NOT NULL,
    input_tokens     BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    hold_minor       BIGINT NOT NULL CHECK (hold_minor >= 0),
    amount_minor     BIGINT NOT NULL CHECK (amount_minor >= 0),
    fee_minor        BIGINT NOT NULL CHECK (fee_minor >= 0),
    provider_minor   BIGINT NOT NULL CHECK (provider_minor >= 0),
    adapter_plugin   TEXT,
    adapter_version  TEXT,
    billing_rule     TEXT,
    upstream_status  BIGINT,
    -- The answer given (output JSON, or the error's status, code and message): what a retry
    -- with the same Idempotency-Key gets again.
    output           TEXT,
    error_status     BIGINT,
    error_code       TEXT,
    error            TEXT,
    statement_id     TEXT,
    payout_id        TEXT,
    CONSTRAINT subscription_charges_split CHECK (amount_minor = fee_minor + provider_minor)
);
CREATE UNIQUE INDEX subscription_charges_idempotency_key
    ON subscription_charges (order_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX subscription_charges_term_key
    ON subscription_charges (order_id, term) WHERE term IS NOT NULL;
CREATE INDEX subscription_charges_order_idx ON subscription_charges (order_id, at);

-- Signed statements: a subscriber's (userSettlement) and a provider's (providerSettlement).
CREATE TABLE subscription_statements (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES subscription_orders (id),
    kind         TEXT NOT NULL CHECK (kind IN ('user', 'provider')),
    amount_minor BIGINT NOT NULL,
    document     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX subscription_statements_order_idx ON subscription_statements (order_id, created_at);

-- Long-lived API keys for programs (accepted wherever a token is). Only the SHA-256 of a key
-- is stored; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name       TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    -- The key's first characters, to recognise it in a list.
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT api_keys_key_sha256_key UNIQUE (key_sha256)
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id, created_at);
