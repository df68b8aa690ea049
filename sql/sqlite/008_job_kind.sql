-- Version 8: a job's kind is stored with it, from its definition (`@job(kind=...)`): `user`
-- jobs are enqueued by application code, `system` jobs belong to the platform, and the admin
-- side may do more with the latter. Rows written before this version are `user` jobs.
--
-- No index: a listing walks the id index newest first and filters as it goes (the statement
-- binds "any kind" and a kind alike, so a partial index could not be chosen for it).
BEGIN IMMEDIATE;

ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'system'));

INSERT OR IGNORE INTO jobworker_schema (version, applied_at)
VALUES (8, (julianday('now') - 2440587.5) * 86400.0);

COMMIT;
