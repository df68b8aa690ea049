-- jobworker schema for PostgreSQL, version 12: a job's kind is stored with it, from its
-- definition (`@job(kind=...)`): `user` jobs are enqueued by application code, `system` jobs
-- belong to the platform, and the admin side may do more with the latter. Idempotent, as the
-- baseline.
--
-- Adding a column with a constant default rewrites nothing: the rows written before this version
-- read as `user`, which the check allows. The check is added NOT VALID so that adding it does not
-- read the whole table under the ALTER's exclusive lock: it holds for every row written from now
-- on, and every earlier row holds the default.
ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'user';

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'jobs_kind_check' AND conrelid = '__SCHEMA__.jobs'::regclass
    ) THEN
        ALTER TABLE __SCHEMA__.jobs
            ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('user', 'system')) NOT VALID;
    END IF;
END
$$;

-- Listing system jobs (the admin side's own) walks this index newest first. Every index on jobs
-- costs an entry per status change (no update of a job is HOT), but this one only for system jobs,
-- which are few (recurring maintenance and the like): a handful of entries per minute, against a
-- walk of the whole primary key to find them among millions of user jobs. User jobs, the many,
-- get no index: listing them walks the primary key, where nearly every row is one.
CREATE INDEX IF NOT EXISTS jobs_system ON __SCHEMA__.jobs (id) WHERE kind = 'system';

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (12) ON CONFLICT (version) DO NOTHING;
