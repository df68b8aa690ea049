-- jobworker schema for PostgreSQL, version 4: continuations, cancellation, paused queues and
-- per-job-type concurrency caps enforced by the claim.

CREATE TABLE IF NOT EXISTS __SCHEMA__.queue_state (
    queue       text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Set (under the parent's row lock) when a continuation is enqueued, so that finishing a job
-- looks for continuations only when it has some.
ALTER TABLE __SCHEMA__.jobs ADD COLUMN IF NOT EXISTS has_continuations boolean NOT NULL DEFAULT false;

-- The claim with concurrency caps: an overload of version 3's claim_jobs that calls it for each
-- group of job types (version 3's function also serves uncapped claims, and workers of the
-- previous release during a rolling deploy).
-- p_job_types are claimed freely; each of p_capped_types may have at most the matching
-- p_caps entry running across the cluster: claims of one capped type are serialised by a
-- transaction-level advisory lock, and count the running ones before taking the rest.
CREATE OR REPLACE FUNCTION __SCHEMA__.claim_jobs(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz, p_capped_types text[], p_caps integer[]
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_types text[] := p_job_types;
    v_room integer := p_limit;
    v_claimed integer := 0;
    v_index integer := 0;
    v_count integer;
BEGIN
    LOOP
        IF v_room > 0 AND cardinality(v_types) > 0 THEN
            -- Each group is claimed by version 3's function: one claim statement, one plan.
            RETURN QUERY
            SELECT * FROM __SCHEMA__.claim_jobs(
                p_now, p_queues, v_types, v_room, p_owner, p_lease_until);
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_claimed := v_claimed + v_count;
        END IF;
        v_index := v_index + 1;
        EXIT WHEN v_index > coalesce(cardinality(p_capped_types), 0) OR v_claimed >= p_limit;
        PERFORM pg_advisory_xact_lock(
            hashtextextended('__SCHEMA__:' || p_capped_types[v_index], 0));
        SELECT count(*) INTO v_count FROM __SCHEMA__.jobs AS r
        WHERE r.status = 'running' AND r.job_type = p_capped_types[v_index];
        v_types := ARRAY[p_capped_types[v_index]];
        v_room := least(p_limit - v_claimed, p_caps[v_index] - v_count);
    END LOOP;
END
$$;

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (4) ON CONFLICT (version) DO NOTHING;
