-- Compute provider access (compute-provider-access §1): real-name certification of enterprises,
-- their supporting documents, and the 5-digit enterprise ids approval assigns. Times are Unix
-- milliseconds.

-- One row per submission; a rejected enterprise submits again, so an account has a history.
CREATE TABLE certifications (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    enterprise_name      TEXT NOT NULL,
    credit_code          TEXT NOT NULL,
    legal_representative TEXT NOT NULL,
    contact_name         TEXT NOT NULL,
    contact_phone        TEXT NOT NULL,
    contact_email        TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED')),
    reason               TEXT,
    submitted_at         BIGINT NOT NULL,
    reviewed_at          BIGINT,
    reviewed_by          TEXT REFERENCES accounts (id)
);
-- At most one submission under review, and at most one approved, per account: concurrent
-- submissions race on these and one wins.
CREATE UNIQUE INDEX certifications_pending_key ON certifications (account_id) WHERE status = 'PENDING';
CREATE UNIQUE INDEX certifications_approved_key ON certifications (account_id) WHERE status = 'APPROVED';
CREATE INDEX certifications_status_idx ON certifications (status, submitted_at);

-- Supporting documents, stored like delivery files (`files::Files`, key
-- `certifications/<certification>/<document>`); media_type is what the content is.
CREATE TABLE certification_documents (
    id               TEXT PRIMARY KEY,
    certification_id TEXT NOT NULL REFERENCES certifications (id),
    ordinal          BIGINT NOT NULL,
    file_name        TEXT NOT NULL,
    media_type       TEXT NOT NULL CHECK (media_type IN ('application/pdf', 'image/jpeg', 'image/png')),
    size             BIGINT NOT NULL,
    sha256           TEXT NOT NULL,
    object_key       TEXT NOT NULL
);
CREATE INDEX certification_documents_cert_idx ON certification_documents (certification_id, ordinal);

-- Certified enterprises. enterprise_id is 5 digits, taken from provider_counters
-- ('enterprise'), which only ever grows, so an id is never reused.
CREATE TABLE enterprises (
    account_id       TEXT PRIMARY KEY REFERENCES accounts (id),
    enterprise_id    TEXT NOT NULL,
    certification_id TEXT NOT NULL REFERENCES certifications (id),
    created_at       BIGINT NOT NULL,
    CONSTRAINT enterprises_enterprise_id_key UNIQUE (enterprise_id)
);

-- Named counters: one row each, bumped with a conditional UPDATE inside the transaction that
-- uses the value, so concurrent users serialise on the row.
CREATE TABLE provider_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO provider_counters (name, value) VALUES ('enterprise', 10000);

-- Identifier code applications (compute-provider-access §2) of certified enterprises, and the
-- 16-digit codes their approval issues (layout: domain::identifiers).
CREATE TABLE identifier_applications (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    enterprise_id TEXT NOT NULL,
    province      TEXT NOT NULL,
    city          TEXT NOT NULL,
    zone          TEXT NOT NULL,
    industry      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED')),
    reason        TEXT,
    code          TEXT,
    submitted_at  BIGINT NOT NULL,
    reviewed_at   BIGINT,
    reviewed_by   TEXT REFERENCES accounts (id),
    CONSTRAINT identifier_applications_code_key UNIQUE (code)
);
CREATE INDEX identifier_applications_account_idx ON identifier_applications (account_id, submitted_at);
CREATE INDEX identifier_applications_status_idx ON identifier_applications (status, submitted_at);

-- The last serial given under each 12-digit prefix (enterprise, province, city, zone,
-- industry): approvals take the next one with an upsert on this row, so concurrent approvals
-- under one prefix serialise here and never share a serial.
CREATE TABLE identifier_serials (
    prefix TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);

-- The notification outbox: one row per notice of a review outcome (e-mail or SMS), written in
-- the decision's transaction and sent by the background worker, which retries with backoff.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    -- What it tells of: 'certification' or 'identifier', and that item's id.
    topic           TEXT NOT NULL,
    topic_id        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notifications_due_idx ON notifications (status, next_attempt_at);
CREATE INDEX notifications_created_idx ON notifications (created_at);
