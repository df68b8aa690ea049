-- jobworker schema for PostgreSQL, version 17: a claim with a limit per kind of handler.
--
-- A worker runs async handlers on tasks (many at once) and sync handlers on a thread pool (as
-- many as it has threads). One claim over every type with the async limit could lease far more
-- slow sync jobs than the worker has threads, and hold them from the other workers of a shared
-- queue. The claim now takes, among its p_limit rows, at most p_sync_limit of p_sync_types (the
-- types of sync handlers) and at most p_async_limit of the others (NULL: no limit but p_limit),
-- most urgent first:
-- - no limit per kind binds: the one walk of jobs_claimable of version 11;
-- - a kind has no room: one walk of the other kind's types;
-- - else one walk of the p_limit most urgent due rows, locked, of which those within their
--   kind's limit are leased (the others are unlocked at the commit, for the next claim); when
--   that fills one kind's limit before p_limit, a walk of the other kind's types takes what is
--   left of its room, so a backlog of one kind ahead never holds up the other.
-- A kind with no due rows is never looked for alone while the other has room (that walk would
-- read the whole backlog: jobs_claimable does not hold the type). The new parameters have
-- defaults, so a worker of the version before calls the same functions with the arguments it
-- knows.
DROP FUNCTION IF EXISTS __SCHEMA__.claim_batch(
    timestamptz, text[], text[], integer, text, timestamptz, text[], integer[]);
DROP FUNCTION IF EXISTS __SCHEMA__.claim_batch(
    timestamptz, text[], text[], integer, text, timestamptz);

CREATE OR REPLACE FUNCTION __SCHEMA__.claim_batch(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz, p_sync_types text[] DEFAULT '{}',
    p_sync_limit integer DEFAULT NULL, p_async_limit integer DEFAULT NULL
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz, event_seq bigint
)
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    v_sync_types text[];
    v_async_types text[];
    v_sync integer := least(p_limit, coalesce(p_sync_limit, p_limit));
    v_async integer := least(p_limit, coalesce(p_async_limit, p_limit));
    v_types text[];
    v_limit integer;
    v_row record;
BEGIN
    IF v_sync >= p_limit AND v_async >= p_limit THEN
        v_types := p_job_types;
        v_limit := p_limit;
    ELSE
        v_sync_types := ARRAY(
            SELECT t FROM unnest(p_job_types) AS t WHERE t = ANY(coalesce(p_sync_types, '{}')));
        v_async_types := ARRAY(
            SELECT t FROM unnest(p_job_types) AS t
            WHERE NOT t = ANY(coalesce(p_sync_types, '{}')));
        IF v_sync <= 0 OR cardinality(v_sync_types) = 0 THEN
            v_types := v_async_types;
            v_limit := v_async;
        ELSIF v_async <= 0 OR cardinality(v_async_types) = 0 THEN
            v_types := v_sync_types;
            v_limit := v_sync;
        ELSE
            FOR v_row IN
                WITH next AS (
                    SELECT j.id, j.job_type, j.priority, j.run_at FROM __SCHEMA__.jobs AS j
                    WHERE j.status IN ('queued', 'scheduled', 'failed')
                      AND j.run_at <= p_now
                      AND j.queue = ANY(ARRAY(
                          SELECT q.name FROM unnest(p_queues) AS q(name)
                          WHERE NOT EXISTS (
                              SELECT 1 FROM __SCHEMA__.queue_state AS s
                              WHERE s.queue = q.name AND s.paused)))
                      AND j.job_type = ANY(p_job_types)
                    ORDER BY j.priority DESC, j.run_at
                    LIMIT p_limit
                    FOR UPDATE SKIP LOCKED
                ), ranked AS (
                    SELECT n.id, n.job_type = ANY(v_sync_types) AS is_sync,
                        row_number() OVER (
                            PARTITION BY n.job_type = ANY(v_sync_types)
                            ORDER BY n.priority DESC, n.run_at) AS nth
                    FROM next AS n
                ), taken AS (
                    SELECT r.id, r.is_sync FROM ranked AS r
                    WHERE r.nth <= CASE WHEN r.is_sync THEN v_sync ELSE v_async END
                ), claimed AS (
                    UPDATE __SCHEMA__.jobs AS j
                    SET status = 'running',
                        attempt = j.attempt + 1,
                        lease_owner = p_owner,
                        lease_expires_at = p_lease_until,
                        started_at = p_now,
                        event_seq = j.event_seq + 1
                    FROM taken
                    WHERE j.id = taken.id
                    RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts,
                        j.enqueued_at, j.started_at, j.result_ttl, j.priority, j.run_at,
                        j.event_seq, taken.is_sync
                )
                SELECT * FROM claimed AS c ORDER BY c.priority DESC, c.run_at
            LOOP
                id := v_row.id;
                job_type := v_row.job_type;
                queue := v_row.queue;
                args := v_row.args;
                attempt := v_row.attempt;
                max_attempts := v_row.max_attempts;
                enqueued_at := v_row.enqueued_at;
                started_at := v_row.started_at;
                result_ttl := v_row.result_ttl;
                priority := v_row.priority;
                run_at := v_row.run_at;
                event_seq := v_row.event_seq;
                RETURN NEXT;
                p_limit := p_limit - 1;
                IF v_row.is_sync THEN
                    v_sync := v_sync - 1;
                ELSE
                    v_async := v_async - 1;
                END IF;
            END LOOP;
            -- One kind's limit filled: the other kind's rows may lie behind its backlog.
            IF p_limit > 0 AND v_sync <= 0 AND v_async > 0 THEN
                v_types := v_async_types;
                v_limit := least(p_limit, v_async);
            ELSIF p_limit > 0 AND v_async <= 0 AND v_sync > 0 THEN
                v_types := v_sync_types;
                v_limit := least(p_limit, v_sync);
            ELSE
                RETURN;
            END IF;
        END IF;
    END IF;
    IF v_limit <= 0 OR cardinality(v_types) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH next AS (
        SELECT j.id FROM __SCHEMA__.jobs AS j
        WHERE j.status IN ('queued', 'scheduled', 'failed')
          AND j.run_at <= p_now
          AND j.queue = ANY(ARRAY(
              SELECT q.name FROM unnest(p_queues) AS q(name)
              WHERE NOT EXISTS (
                  SELECT 1 FROM __SCHEMA__.queue_state AS s
                  WHERE s.queue = q.name AND s.paused)))
          AND j.job_type = ANY(v_types)
        ORDER BY j.priority DESC, j.run_at
        LIMIT v_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE __SCHEMA__.jobs AS j
    SET status = 'running',
        attempt = j.attempt + 1,
        lease_owner = p_owner,
        lease_expires_at = p_lease_until,
        started_at = p_now,
        event_seq = j.event_seq + 1
    FROM next
    WHERE j.id = next.id
    RETURNING j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts, j.enqueued_at,
        j.started_at, j.result_ttl, j.priority, j.run_at, j.event_seq;
END
$$;

-- The claim with per-job-type concurrency caps, as in version 8 (p_job_types claimed freely,
-- then each capped type under its advisory lock, counting the running ones), each group within
-- what is left of the limits per kind.
CREATE OR REPLACE FUNCTION __SCHEMA__.claim_batch(
    p_now timestamptz, p_queues text[], p_job_types text[], p_limit integer, p_owner text,
    p_lease_until timestamptz, p_capped_types text[], p_caps integer[],
    p_sync_types text[] DEFAULT '{}', p_sync_limit integer DEFAULT NULL,
    p_async_limit integer DEFAULT NULL
) RETURNS TABLE (
    id uuid, job_type text, queue text, args jsonb, attempt integer, max_attempts integer,
    enqueued_at timestamptz, started_at timestamptz, result_ttl double precision,
    priority integer, run_at timestamptz, event_seq bigint
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_types text[] := p_job_types;
    v_room integer := p_limit;
    v_sync integer := coalesce(p_sync_limit, p_limit);
    v_async integer := coalesce(p_async_limit, p_limit);
    v_claimed integer := 0;
    v_index integer := 0;
    v_count integer;
    v_row record;
BEGIN
    LOOP
        IF v_room > 0 AND cardinality(v_types) > 0 THEN
            FOR v_row IN
                SELECT * FROM __SCHEMA__.claim_batch(
                    p_now, p_queues, v_types, v_room, p_owner, p_lease_until,
                    p_sync_types, v_sync, v_async)
            LOOP
                id := v_row.id;
                job_type := v_row.job_type;
                queue := v_row.queue;
                args := v_row.args;
                attempt := v_row.attempt;
                max_attempts := v_row.max_attempts;
                enqueued_at := v_row.enqueued_at;
                started_at := v_row.started_at;
                result_ttl := v_row.result_ttl;
                priority := v_row.priority;
                run_at := v_row.run_at;
                event_seq := v_row.event_seq;
                RETURN NEXT;
                v_claimed := v_claimed + 1;
                IF v_row.job_type = ANY(coalesce(p_sync_types, '{}')) THEN
                    v_sync := v_sync - 1;
                ELSE
                    v_async := v_async - 1;
                END IF;
            END LOOP;
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

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (17) ON CONFLICT (version) DO NOTHING;
