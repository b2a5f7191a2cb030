-- Bill synchronisation of compute providers (compute-provider-access §4): each offering may name
-- the billing rule (a billing plugin and its config) that prices its provider's bill lines; the
-- lines a provider plugin lists are stored once each and charged to the order they belong to.
ALTER TABLE compute_offerings ADD COLUMN billing_plugin TEXT;
ALTER TABLE compute_offerings ADD COLUMN billing_config TEXT NOT NULL DEFAULT '{}';

-- held_minor is what an order holds now, ended orders included (they keep a reserve for the
-- bills to come). Orders that ended before were settled in full and hold nothing.
UPDATE compute_orders SET held_minor = 0 WHERE state IN ('RECLAIMED', 'FAILED');

-- Bill lines as the provider listed them. The key (provider, resource, period, unit) makes a
-- line listed again by a later sync the same line. status: unmatched (no order has the
-- resource), charged (posted on the ledger, charge_minor/fee_minor), unpaid (the user's hold and
-- balance did not cover it; charged by a later sync), rejected (cannot be charged, see error).
CREATE TABLE compute_bill_lines (
    id                  TEXT PRIMARY KEY,
    provider_account_id TEXT NOT NULL REFERENCES accounts (id),
    offering_id         TEXT NOT NULL REFERENCES compute_offerings (id),
    resource_id         TEXT NOT NULL,
    period_start        TEXT NOT NULL,
    period_end          TEXT NOT NULL,
    unit                TEXT NOT NULL,
    quantity_milli      INTEGER NOT NULL,
    amount_minor        INTEGER NOT NULL,
    currency            TEXT NOT NULL,
    order_id            TEXT REFERENCES compute_orders (id),
    status              TEXT NOT NULL CHECK (status IN ('unmatched', 'charged', 'unpaid', 'rejected')),
    charge_minor        INTEGER,
    fee_minor           INTEGER,
    rule                TEXT,
    error               TEXT,
    synced_at           INTEGER NOT NULL,
    charged_at          INTEGER,
    CONSTRAINT compute_bill_lines_key UNIQUE (provider_account_id, resource_id, period_start, period_end, unit)
);
CREATE INDEX compute_bill_lines_status_idx ON compute_bill_lines (provider_account_id, status);
CREATE INDEX compute_bill_lines_order_idx ON compute_bill_lines (order_id, period_start);
CREATE INDEX compute_bill_lines_period_idx ON compute_bill_lines (period_start);
CREATE INDEX compute_orders_resource_idx ON compute_orders (provider_resource_id);
