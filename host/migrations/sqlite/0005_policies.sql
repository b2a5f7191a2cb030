-- Usage policies of controlled data (A.3.7): what a trusted data space set up for one settled
-- license, the counters it limits uses with, and the log of every access decision. A policy is
-- bound to its confirmation (the purchase), not to one license number, so re-issued licenses
-- (A.3.8) keep their policies. Times are Unix milliseconds.

CREATE TABLE policies (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    resource_id           TEXT NOT NULL REFERENCES resources (id),
    data_id               TEXT NOT NULL,
    confirm_id            TEXT NOT NULL REFERENCES confirmations (id),
    licensee_account_id   TEXT NOT NULL REFERENCES accounts (id),
    licensee_name         TEXT NOT NULL,
    data_space_account_id TEXT NOT NULL REFERENCES accounts (id),
    -- JSON: the relUsers (A.49) and useScenes (A.50) as set up, without remainingCounts.
    rel_users             TEXT NOT NULL,
    use_scenes            TEXT NOT NULL,
    -- Valid from starts_at (inclusive) to ends_at (exclusive), like license terms.
    starts_at             INTEGER NOT NULL,
    ends_at               INTEGER NOT NULL CHECK (ends_at > starts_at),
    -- SHA-256 of the canonical request (without the license): a repeated /deliverDatasets with
    -- the same terms returns this policy, other terms under the same name are a conflict.
    request_sha256        TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    revoked_at            INTEGER,
    revoked_by            TEXT
);
-- One live policy per purchase and policy name.
CREATE UNIQUE INDEX policies_live_name_key ON policies (confirm_id, name) WHERE revoked_at IS NULL;
CREATE INDEX policies_resource_idx ON policies (resource_id, created_at);

-- One counter per use scene that has `counts`. Accesses decrement `remaining` with a
-- conditional UPDATE in the transaction that records their decision.
CREATE TABLE policy_counters (
    policy_id TEXT NOT NULL REFERENCES policies (id),
    scene     TEXT NOT NULL,
    counts    INTEGER NOT NULL CHECK (counts >= 0),
    remaining INTEGER NOT NULL,
    CONSTRAINT policy_counters_pkey PRIMARY KEY (policy_id, scene),
    CONSTRAINT policy_counters_range CHECK (remaining >= 0 AND remaining <= counts)
);

-- The decision log. (policy_id, request_id) is the idempotency key: a repeated request finds
-- its first decision here. counters_before / counters_after: JSON {scene: remaining}.
CREATE TABLE policy_decisions (
    id              TEXT PRIMARY KEY,
    policy_id       TEXT NOT NULL REFERENCES policies (id),
    request_id      TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    at              INTEGER NOT NULL,
    user_id         TEXT NOT NULL,
    scene           TEXT NOT NULL,
    uses            INTEGER NOT NULL,
    plugin_id       TEXT,
    plugin_version  TEXT,
    decision        TEXT NOT NULL CHECK (decision IN ('ALLOW', 'DENY')),
    reasons         TEXT NOT NULL,
    counters_before TEXT NOT NULL,
    counters_after  TEXT NOT NULL,
    CONSTRAINT policy_decisions_request_key UNIQUE (policy_id, request_id)
);
CREATE INDEX policy_decisions_policy_idx ON policy_decisions (policy_id, at);

-- The policy plugin chosen for one controlled publication; publications without a row use the
-- default policy plugin with config {}.
CREATE TABLE resource_policy (
    resource_id TEXT PRIMARY KEY CONSTRAINT resource_policy_resource_fkey REFERENCES resources (id),
    plugin_id   TEXT NOT NULL CONSTRAINT resource_policy_plugin_fkey REFERENCES plugins (plugin_id),
    config      TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
