-- jobworker schema for PostgreSQL, version 14: what the admin dashboard's overview reads.
-- Idempotent, as the baseline.
--
-- Throughput (attempts ended per minute by outcome, over the last hour) reads job_attempts by
-- ended_at. Attempts are inserted in the order they end and never updated, so the table's pages
-- follow ended_at: a BRIN index (one summary per 32 pages, a few kilobytes for millions of rows)
-- finds the last hour's pages. Unlike a B-tree it adds no entry per completed job: a new row only
-- widens its range's summary, when autovacuum summarizes it (autosummarize: as soon as the
-- range is full), and pages not yet summarized are always read. Space the janitor frees in old
-- pages is reused by new rows, which widens those ranges: the index then reads more pages than
-- it needs, never fewer.
CREATE INDEX IF NOT EXISTS job_attempts_ended
    ON __SCHEMA__.job_attempts USING brin (ended_at)
    WITH (pages_per_range = 32, autosummarize = on);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (14) ON CONFLICT (version) DO NOTHING;
