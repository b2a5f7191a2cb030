-- A change feed for the in-memory match index. Every publication or revocation bumps the single
-- version counter in its own transaction; the counter's row lock makes version order equal commit
-- order, so a server that has applied every change up to version V knows it has missed nothing.
-- match_items keeps one row per item ever indexed: its latest version and whether it is live.

CREATE TABLE match_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO match_state (id, version) VALUES (1, 1);

CREATE TABLE match_items (
    side    TEXT NOT NULL CHECK (side IN ('resource', 'demand')),
    item_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    live    INTEGER NOT NULL CHECK (live IN (0, 1)),
    PRIMARY KEY (side, item_id)
);
CREATE INDEX match_items_version_idx ON match_items (version);

INSERT INTO match_items (side, item_id, version, live)
SELECT DISTINCT side, item_id, 1, 1 FROM match_terms;
