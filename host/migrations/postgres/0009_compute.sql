-- Compute provider access, deep access (compute-provider-access §4): the `provider` plugin
-- kind, offerings of compute resources and the orders that provision them.

ALTER TABLE plugin_versions DROP CONSTRAINT plugin_versions_kind_check;
ALTER TABLE plugin_versions ADD CONSTRAINT plugin_versions_kind_check
    CHECK (kind IN ('billing', 'policy', 'adapter', 'provider'));
ALTER TABLE plugins DROP CONSTRAINT plugins_kind_check;
ALTER TABLE plugins ADD CONSTRAINT plugins_kind_check
    CHECK (kind IN ('billing', 'policy', 'adapter', 'provider'));
ALTER TABLE plugin_defaults DROP CONSTRAINT plugin_defaults_kind_check;
ALTER TABLE plugin_defaults ADD CONSTRAINT plugin_defaults_kind_check
    CHECK (kind IN ('billing', 'policy', 'adapter', 'provider'));

-- Offerings of certified provider enterprises: a resource type in a region, its spec (JSON),
-- its price per hour (per GiB-month for storage services) in minor units, and the provider
-- plugin (with its per-offering config) that provisions it.
CREATE TABLE compute_offerings (
    id                  TEXT PRIMARY KEY,
    provider_account_id TEXT NOT NULL REFERENCES accounts (id),
    resource_type       TEXT NOT NULL CHECK (resource_type IN ('cloud_host', 'bare_metal', 'file_service', 'storage_service')),
    region              TEXT NOT NULL,
    spec                TEXT NOT NULL,
    price_minor         BIGINT NOT NULL CHECK (price_minor >= 0),
    plugin_id           TEXT NOT NULL,
    config              TEXT NOT NULL,
    code                TEXT,
    created_at          BIGINT NOT NULL
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
    attempts             BIGINT NOT NULL,
    next_attempt_at      BIGINT NOT NULL,
    held_minor           BIGINT NOT NULL,
    charged_minor        BIGINT NOT NULL,
    paid_periods         BIGINT NOT NULL,
    suspended_at         BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    active_at            BIGINT,
    ended_at             BIGINT,
    CONSTRAINT compute_orders_idempotency_key UNIQUE (account_id, idempotency_key)
);
CREATE INDEX compute_orders_due_idx ON compute_orders (state, next_attempt_at);
CREATE INDEX compute_orders_account_idx ON compute_orders (account_id, created_at);
