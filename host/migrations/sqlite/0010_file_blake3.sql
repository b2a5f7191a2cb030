-- Delivery checks a stored file against a BLAKE3 digest recorded at upload (over twice as fast
-- as SHA-256 here, which stays the digest documents and proofs name). Files uploaded before have
-- none and are checked by SHA-256.
ALTER TABLE resource_files ADD COLUMN blake3 TEXT;
