-- Plugins (WebAssembly components): installed packages, which version of each plugin is
-- active, the default plugin per kind, billing rules chosen per publication, and the audit
-- trail of every call. Packages are kept whole (signed bytes) so that every server of a
-- deployment, and a restarted one, loads exactly what the operator installed.

CREATE TABLE plugin_versions (
    plugin_id        TEXT NOT NULL,
    version          TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('billing', 'policy', 'adapter')),
    wit_version      TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    publisher        TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    description      TEXT NOT NULL,
    manifest         TEXT NOT NULL,
    package          BYTEA NOT NULL,
    installed_by     TEXT NOT NULL,
    installed_at     BIGINT NOT NULL,
    CONSTRAINT plugin_versions_pkey PRIMARY KEY (plugin_id, version)
);

-- A plugin id's active version serves new calls; calls in flight finish on the version they
-- started with.
CREATE TABLE plugins (
    plugin_id      TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('billing', 'policy', 'adapter')),
    active_version TEXT NOT NULL,
    enabled        BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    updated_at     BIGINT NOT NULL,
    CONSTRAINT plugins_active_version_fkey FOREIGN KEY (plugin_id, active_version)
        REFERENCES plugin_versions (plugin_id, version)
);

CREATE TABLE plugin_defaults (
    kind      TEXT PRIMARY KEY CHECK (kind IN ('billing', 'policy', 'adapter')),
    plugin_id TEXT NOT NULL CONSTRAINT plugin_defaults_plugin_fkey REFERENCES plugins (plugin_id)
);

-- The billing rule of one publication; resources without a row use the default billing plugin
-- with the operator's default configuration.
CREATE TABLE resource_billing (
    resource_id TEXT PRIMARY KEY CONSTRAINT resource_billing_resource_fkey REFERENCES resources (id),
    plugin_id   TEXT NOT NULL CONSTRAINT resource_billing_plugin_fkey REFERENCES plugins (plugin_id),
    config      TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Bumped by every change above, so that each server reloads its registry when another one
-- (or the CLI) changed the plugins.
CREATE TABLE plugin_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO plugin_state (id, generation) VALUES (1, 1);

-- One row per plugin call. outcome: ok (the plugin answered), rejected (it answered with its
-- own typed error), failed (trap, timeout, fuel, memory, malformed or refused output).
CREATE TABLE plugin_calls (
    id               TEXT PRIMARY KEY,
    at               BIGINT NOT NULL,
    plugin_id        TEXT NOT NULL,
    version          TEXT NOT NULL,
    component_sha256 TEXT NOT NULL,
    kind             TEXT NOT NULL,
    operation        TEXT NOT NULL,
    caller           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    input_sha256     TEXT NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('ok', 'rejected', 'failed')),
    error            TEXT,
    fuel_used        BIGINT,
    duration_us      BIGINT NOT NULL
);
CREATE INDEX plugin_calls_at_idx ON plugin_calls (at);
CREATE INDEX plugin_calls_plugin_idx ON plugin_calls (plugin_id, at);
