-- Named statements of the SQL Server backend. Each starts with a `-- name: <name>` line.
-- A placeholder is replaced by the validated, bracket-quoted schema name.
--
-- Parameters. pyodbc passes them by position, so every statement declares its parameters first,
-- one `DECLARE @name type = <marker>;` line each, in order, and the backend binds them by name.
-- No parameter is ever NULL: values that may be missing travel inside a JSON document read with
-- OPENJSON, so the ODBC driver never has to guess a NULL's type. Times travel as ISO 8601 text in
-- UTC ('2030-01-01T12:00:00.000000'), which datetime2 reads the same under every language and
-- DATEFORMAT setting, and which keeps all six fractional digits.
--
-- Transactions. The connection is in autocommit mode: a single statement is its own transaction,
-- and a statement made of several opens and commits its own, with XACT_ABORT ON so that any error
-- rolls all of it back. Results are selected before COMMIT; the backend reads every result set.
-- Inside a transaction the backend holds open (to store what a statement answered in the same
-- one), a statement's own BEGIN and COMMIT only nest; the statements run there never roll back
-- (a ROLLBACK would end the backend's transaction too).
--
-- Status changes. A statement that changes jobs' statuses numbers each change's event
-- (event_seq + 1) and answers the changes after its own answer, as a result set of
-- (id, event_seq, status, attempt, error, run_at) rows: the backend builds their events, timed by
-- its clock (the @now it passed), and stores them with store_events in the same transaction.
-- The ends of attempts are the exception: their job_attempts rows record them.

-- name: database_now
-- The server's clock (UTC).
SELECT SYSUTCDATETIME();

-- name: schema_table_exists
SELECT CASE WHEN OBJECT_ID(N'__SCHEMA__.jobworker_schema', N'U') IS NULL THEN 0 ELSE 1 END;

-- name: schema_version
SELECT COALESCE(MAX(version), 0) FROM __SCHEMA__.jobworker_schema;

-- name: migration_lock
-- Runs inside the migration's transaction, which owns the lock until it commits or rolls back.
SET NOCOUNT ON;
DECLARE @resource nvarchar(255) = ?;
DECLARE @wait_forever int = -1;
DECLARE @sync_room int = @sync_limit;
DECLARE @async_room int = @async_limit;
DECLARE @is_sync bit;
DECLARE @got int;
DECLARE @picked TABLE (id uniqueidentifier NOT NULL PRIMARY KEY);
DECLARE @status int;
EXEC @status = sp_getapplock
    @Resource = @resource, @LockMode = N'Exclusive', @LockOwner = N'Transaction',
    @LockTimeout = @wait_forever;
SELECT @status;

-- name: enqueue
-- The whole batch in one transaction. A job whose idempotency key is already held (by a stored
-- job, or by an earlier job of the same batch) is not inserted and answers with the holder's id.
-- UPDLOCK + HOLDLOCK lock the key's range in the unique index from the check to the commit, so
-- a concurrent enqueue of the same key waits for this one; the unique index is the backstop.
-- Continuations: their parents are locked (and marked) first, so that a parent finishing at the
-- same moment either sees the continuation or is seen by it; those whose parent has already
-- ended are settled before the commit (then answered as status changes). A missing parent
-- stores nothing: the answer is then one row per job whose parent is missing (its fourth
-- column), and nothing else; nothing was written, so the statement commits (a ROLLBACK would end
-- the caller's transaction too), and the backend rolls its own transaction back.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @jobs nvarchar(max) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @default_ttl float = ?;
DECLARE @new TABLE (
    ord               int NOT NULL PRIMARY KEY,
    id                uniqueidentifier NOT NULL,
    job_type          nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
    queue             nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL,
    priority          int NOT NULL,
    status            nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
    args              nvarchar(max) NOT NULL,
    max_attempts      int NOT NULL,
    enqueued_at       datetime2(6) NOT NULL,
    run_at            datetime2(6) NOT NULL,
    idempotency_key   nvarchar(850) COLLATE Latin1_General_100_BIN2 NULL,
    continues_job_id  uniqueidentifier NULL,
    result_ttl        float NULL,
    kind              nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
    trace_context     nvarchar(1024) NULL
);
DECLARE @inserted TABLE (id uniqueidentifier NOT NULL PRIMARY KEY);
DECLARE @parents TABLE (
    id      uniqueidentifier NOT NULL PRIMARY KEY,
    status  nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL
);
DECLARE @ended_parents nvarchar(max);
DECLARE @settled nvarchar(max);
INSERT INTO @new (
    ord, id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, continues_job_id, result_ttl, kind, trace_context
)
SELECT CAST(a.[key] AS int), j.id, j.job_type, j.queue, j.priority, j.status, j.args,
    j.max_attempts, j.enqueued_at, j.run_at, j.idempotency_key, j.continues_job_id, j.result_ttl,
    j.kind, j.trace_context
FROM OPENJSON(@jobs) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (
    id                uniqueidentifier '$.id',
    job_type          nvarchar(max) '$.job_type',
    queue             nvarchar(max) '$.queue',
    priority          int '$.priority',
    status            nvarchar(max) '$.status',
    args              nvarchar(max) '$.args',
    max_attempts      int '$.max_attempts',
    enqueued_at       datetime2(6) '$.enqueued_at',
    run_at            datetime2(6) '$.run_at',
    idempotency_key   nvarchar(max) '$.idempotency_key',
    continues_job_id  uniqueidentifier '$.continues_job_id',
    result_ttl        float '$.result_ttl',
    kind              nvarchar(max) '$.kind',
    trace_context     nvarchar(1024) '$.trace_context'
) AS j;
BEGIN TRANSACTION;
INSERT INTO @parents (id, status)
SELECT p.id, p.status FROM __SCHEMA__.jobs AS p WITH (UPDLOCK, ROWLOCK)
WHERE p.id IN (SELECT n.continues_job_id FROM @new AS n WHERE n.continues_job_id IS NOT NULL);
IF EXISTS (SELECT 1 FROM @new AS n
           WHERE n.continues_job_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM @parents AS p WHERE p.id = n.continues_job_id))
BEGIN
    SELECT n.ord, CAST(0 AS bit), CAST(NULL AS uniqueidentifier), n.continues_job_id
    FROM @new AS n
    WHERE n.continues_job_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @parents AS p WHERE p.id = n.continues_job_id)
    ORDER BY n.ord;
    COMMIT TRANSACTION;
    RETURN;
END;
UPDATE p SET has_continuations = 1
FROM __SCHEMA__.jobs AS p
JOIN @parents AS q ON q.id = p.id;
INSERT INTO __SCHEMA__.jobs (
    id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, continues_job_id, result_ttl, kind, trace_context
)
OUTPUT inserted.id INTO @inserted (id)
SELECT n.id, n.job_type, n.queue, n.priority, n.status, n.args, n.max_attempts, n.enqueued_at,
    n.run_at, n.idempotency_key, n.continues_job_id, n.result_ttl, n.kind, n.trace_context
FROM @new AS n
WHERE n.idempotency_key IS NULL
   OR (NOT EXISTS (SELECT 1 FROM @new AS f
                   WHERE f.idempotency_key = n.idempotency_key AND f.ord < n.ord)
       AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobs AS h WITH (UPDLOCK, HOLDLOCK)
                       WHERE h.idempotency_key = n.idempotency_key))
ORDER BY n.ord;
SET @ended_parents = (SELECT p.id FROM @parents AS p
                      WHERE p.status IN (N'succeeded', N'dead', N'cancelled')
                      FOR JSON PATH);
IF @ended_parents IS NOT NULL
    EXEC __SCHEMA__.settle_continuations
        @parents = @ended_parents, @now = @now, @default_ttl = @default_ttl,
        @changes = @settled OUTPUT;
SELECT n.ord, CAST(CASE WHEN i.id IS NULL THEN 0 ELSE 1 END AS bit), COALESCE(i.id, h.id),
    CAST(NULL AS uniqueidentifier)
FROM @new AS n
LEFT JOIN @inserted AS i ON i.id = n.id
OUTER APPLY (SELECT j.id FROM __SCHEMA__.jobs AS j
             WHERE i.id IS NULL AND j.idempotency_key = n.idempotency_key) AS h
ORDER BY n.ord;
SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
FROM OPENJSON(COALESCE(@settled, N'[]')) WITH (
    id         uniqueidentifier '$.id',
    event_seq  bigint '$.event_seq',
    status     nvarchar(16) '$.status',
    attempt    int '$.attempt',
    error      nvarchar(max) '$.error',
    run_at     datetime2(6) '$.run_at'
) AS c;
COMMIT TRANSACTION;

-- name: claim
-- Lock the most urgent due rows no other worker holds (READPAST), lease them, count the
-- attempt, and number its `running` event (event_seq + 1; nothing stores it: it is read from the
-- job's row, then from the attempt's). UPDATE TOP (n) would take any n rows, so the order lives
-- in a CTE that is updated. READCOMMITTEDLOCK reads jobs with locks whatever the database's
-- READ_COMMITTED_SNAPSHOT (READPAST skips locked rows only in a locking read). A queue paused
-- in queue_state gives nothing, whatever the worker last read of the pauses (docs/sqlserver.md).
-- @job_types (a JSON array) are claimed freely. @caps (a JSON array of {"job_type", "cap"}) are
-- the capped types: for each, an application lock serialises the claims of that type across
-- every worker until the commit, the running ones are counted, and no more than the rest taken.
-- Limits per kind of handler: of the most urgent rows a group takes, at most @sync_limit of
-- @sync_types (a JSON array: a worker's free threads) and @async_limit of the others; the rest
-- are left for the next claim.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @now datetime2(6) = ?;
DECLARE @queues nvarchar(max) = ?;
DECLARE @job_types nvarchar(max) = ?;
DECLARE @limit int = ?;
DECLARE @owner nvarchar(400) = ?;
DECLARE @lease_until datetime2(6) = ?;
DECLARE @caps nvarchar(max) = ?;
DECLARE @lock_prefix nvarchar(100) = ?;
DECLARE @sync_types nvarchar(max) = ?;
DECLARE @sync_limit int = ?;
DECLARE @async_limit int = ?;
DECLARE @claimed TABLE (
    id            uniqueidentifier NOT NULL,
    job_type      nvarchar(400) NOT NULL,
    queue         nvarchar(200) NOT NULL,
    args          nvarchar(max) NOT NULL,
    attempt       int NOT NULL,
    max_attempts  int NOT NULL,
    enqueued_at   datetime2(6) NOT NULL,
    started_at    datetime2(6) NULL,
    result_ttl    float NULL,
    priority      int NOT NULL,
    run_at        datetime2(6) NOT NULL,
    event_seq     bigint NOT NULL,
    trace_context nvarchar(1024) NULL
);
DECLARE @capped TABLE (n int NOT NULL PRIMARY KEY, job_type nvarchar(max) NOT NULL, cap int NOT NULL);
DECLARE @room int = @limit;
DECLARE @i int = 0;
DECLARE @count int;
DECLARE @type nvarchar(max);
DECLARE @cap int;
DECLARE @running int;
DECLARE @take int;
DECLARE @lock int;
DECLARE @resource nvarchar(255);
DECLARE @wait_forever int = -1;
INSERT INTO @capped (n, job_type, cap)
SELECT CAST(a.[key] AS int), c.job_type, c.cap
FROM OPENJSON(@caps) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (job_type nvarchar(max) '$.job_type', cap int '$.cap') AS c;
SET @count = @@ROWCOUNT;
BEGIN TRANSACTION;
-- The most urgent @room rows, locked; those within their kind's limit are leased.
INSERT INTO @picked (id)
SELECT r.id FROM (
    SELECT n.id, n.is_sync,
        ROW_NUMBER() OVER (PARTITION BY n.is_sync ORDER BY n.priority DESC, n.run_at) AS nth
    FROM (
        SELECT TOP (@room) j.id, j.priority, j.run_at,
            CASE WHEN j.job_type IN (SELECT s.[value] COLLATE Latin1_General_100_BIN2
                                     FROM OPENJSON(@sync_types) AS s)
                 THEN 1 ELSE 0 END AS is_sync
        FROM __SCHEMA__.jobs AS j WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)
        WHERE j.status IN (N'queued', N'scheduled', N'failed')
          AND j.run_at <= @now
          AND j.queue IN (SELECT q.[value] COLLATE Latin1_General_100_BIN2 FROM OPENJSON(@queues) AS q)
          AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_state AS s WHERE s.queue = j.queue AND s.paused = 1)
          AND j.job_type IN (SELECT t.[value] COLLATE Latin1_General_100_BIN2
                             FROM OPENJSON(@job_types) AS t)
        ORDER BY j.priority DESC, j.run_at
    ) AS n
) AS r
WHERE r.nth <= CASE WHEN r.is_sync = 1 THEN @sync_room ELSE @async_room END;
UPDATE j
SET status = N'running',
    attempt = attempt + 1,
    lease_owner = @owner,
    lease_expires_at = @lease_until,
    started_at = @now,
    event_seq = event_seq + 1
OUTPUT inserted.id, inserted.job_type, inserted.queue, inserted.args, inserted.attempt,
    inserted.max_attempts, inserted.enqueued_at, inserted.started_at, inserted.result_ttl,
    inserted.priority, inserted.run_at, inserted.event_seq, inserted.trace_context
INTO @claimed
FROM __SCHEMA__.jobs AS j
JOIN @picked AS p ON p.id = j.id;
-- From the OUTPUT rows, as every change of jobs is counted.
SET @room = @limit - (SELECT COUNT(*) FROM @claimed);
SELECT @got = COUNT(*) FROM @claimed AS c
WHERE c.job_type IN (SELECT s.[value] COLLATE Latin1_General_100_BIN2
                     FROM OPENJSON(@sync_types) AS s);
SET @sync_room = @sync_room - @got;
SET @async_room = @async_room - (@limit - @room - @got);
-- One kind's limit filled: the other kind's rows may lie behind its backlog (a kind with no room
-- is never walked alone: the walk would read the whole backlog, the index has no type).
IF @room > 0 AND ((@sync_room <= 0 AND @async_room > 0) OR (@async_room <= 0 AND @sync_room > 0))
BEGIN
    SET @is_sync = CASE WHEN @sync_room > 0 THEN 1 ELSE 0 END;
    SET @take = CASE WHEN @is_sync = 1 THEN @sync_room ELSE @async_room END;
    IF @room < @take
        SET @take = @room;
    DELETE FROM @picked;
    INSERT INTO @picked (id)
    SELECT TOP (@take) j.id
    FROM __SCHEMA__.jobs AS j WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)
    WHERE j.status IN (N'queued', N'scheduled', N'failed')
      AND j.run_at <= @now
      AND j.queue IN (SELECT q.[value] COLLATE Latin1_General_100_BIN2 FROM OPENJSON(@queues) AS q)
      AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_state AS s WHERE s.queue = j.queue AND s.paused = 1)
      AND j.job_type IN (SELECT t.[value] COLLATE Latin1_General_100_BIN2
                         FROM OPENJSON(@job_types) AS t)
      AND CASE WHEN j.job_type IN (SELECT s.[value] COLLATE Latin1_General_100_BIN2
                                   FROM OPENJSON(@sync_types) AS s)
               THEN 1 ELSE 0 END = @is_sync
    ORDER BY j.priority DESC, j.run_at;
    UPDATE j
    SET status = N'running',
        attempt = attempt + 1,
        lease_owner = @owner,
        lease_expires_at = @lease_until,
        started_at = @now,
        event_seq = event_seq + 1
    OUTPUT inserted.id, inserted.job_type, inserted.queue, inserted.args, inserted.attempt,
        inserted.max_attempts, inserted.enqueued_at, inserted.started_at, inserted.result_ttl,
        inserted.priority, inserted.run_at, inserted.event_seq, inserted.trace_context
    INTO @claimed
    FROM __SCHEMA__.jobs AS j
    JOIN @picked AS p ON p.id = j.id;
    SET @got = (SELECT COUNT(*) FROM @claimed) - (@limit - @room);
    IF @is_sync = 1
        SET @sync_room = @sync_room - @got;
    ELSE
        SET @async_room = @async_room - @got;
    SET @room = @limit - (SELECT COUNT(*) FROM @claimed);
END;
WHILE @i < @count AND @room > 0
BEGIN
    SELECT @type = c.job_type, @cap = c.cap FROM @capped AS c WHERE c.n = @i;
    SET @resource = @lock_prefix + CONVERT(nvarchar(64), HASHBYTES('SHA2_256', @type), 2);
    EXEC @lock = sp_getapplock
        @Resource = @resource, @LockMode = N'Exclusive', @LockOwner = N'Transaction',
        @LockTimeout = @wait_forever;
    IF @lock < 0
        THROW 51000, N'jobworker: could not take the lock of a concurrency cap', 1;
    SELECT @running = COUNT(*) FROM __SCHEMA__.jobs AS r
    WHERE r.status = N'running' AND r.job_type = @type;
    SET @take = CASE WHEN @cap - @running < @room THEN @cap - @running ELSE @room END;
    SET @is_sync = CASE WHEN EXISTS (SELECT 1 FROM OPENJSON(@sync_types) AS s
                                     WHERE s.[value] COLLATE Latin1_General_100_BIN2 = @type)
                        THEN 1 ELSE 0 END;
    IF @is_sync = 1 AND @sync_room < @take
        SET @take = @sync_room;
    IF @is_sync = 0 AND @async_room < @take
        SET @take = @async_room;
    IF @take < 0
        SET @take = 0;
    WITH due AS (
        SELECT TOP (@take)
            j.id, j.job_type, j.queue, j.args, j.attempt, j.max_attempts, j.enqueued_at,
            j.started_at, j.result_ttl, j.priority, j.run_at, j.status, j.lease_owner,
            j.lease_expires_at, j.event_seq, j.trace_context
        FROM __SCHEMA__.jobs AS j WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)
        WHERE j.status IN (N'queued', N'scheduled', N'failed')
          AND j.run_at <= @now
          AND j.queue IN (SELECT q.[value] COLLATE Latin1_General_100_BIN2
                          FROM OPENJSON(@queues) AS q)
          AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_state AS s
                          WHERE s.queue = j.queue AND s.paused = 1)
          AND j.job_type = @type
        ORDER BY j.priority DESC, j.run_at
    )
    UPDATE due
    SET status = N'running',
        attempt = attempt + 1,
        lease_owner = @owner,
        lease_expires_at = @lease_until,
        started_at = @now,
        event_seq = event_seq + 1
    OUTPUT inserted.id, inserted.job_type, inserted.queue, inserted.args, inserted.attempt,
        inserted.max_attempts, inserted.enqueued_at, inserted.started_at, inserted.result_ttl,
        inserted.priority, inserted.run_at, inserted.event_seq, inserted.trace_context
    INTO @claimed;
    -- What this group took: the rows claimed now less those before it (@limit - @room).
    SET @got = (SELECT COUNT(*) FROM @claimed) - (@limit - @room);
    IF @is_sync = 1
        SET @sync_room = @sync_room - @got;
    ELSE
        SET @async_room = @async_room - @got;
    SET @room = @limit - (SELECT COUNT(*) FROM @claimed);
    SET @i = @i + 1;
END;
SELECT id, job_type, queue, args, attempt, max_attempts, enqueued_at, started_at, result_ttl,
    priority, run_at, event_seq, trace_context
FROM @claimed
ORDER BY priority DESC, run_at;
COMMIT TRANSACTION;

-- name: extend_leases
-- Only the leases the worker holds (@held: a JSON list of [id, attempt]): a job leased to it
-- that it never received (a claim whose reply was lost) is left to expire.
SET NOCOUNT ON;
DECLARE @owner nvarchar(400) = ?;
DECLARE @held nvarchar(max) = ?;
DECLARE @lease_until datetime2(6) = ?;
DECLARE @extended TABLE (id uniqueidentifier NOT NULL);
UPDATE j SET lease_expires_at = @lease_until
OUTPUT inserted.id INTO @extended (id)
FROM __SCHEMA__.jobs AS j
JOIN OPENJSON(@held) WITH (
    id       uniqueidentifier '$[0]',
    attempt  int '$[1]'
) AS h ON h.id = j.id AND h.attempt = j.attempt
WHERE j.lease_owner = @owner AND j.status = N'running';
SELECT id FROM @extended;

-- name: end_attempts
-- Attempts end as `attempt_ends` decided (@ends, a JSON array of its AttemptEnd rows: a
-- completion's two ways, a lease end's one), in one transaction. The attempts' events are stored
-- first (@events; one whose (job, seq) is already stored, or comes earlier in the array, is
-- dropped). Then each end is applied to its job if it is the way for the job's cancel_requested
-- and the attempt still holds its lease (job, lease owner, attempt, status running); it says
-- everything written, no rule is here: error and traceback are kept, set or cleared as their
-- effect says; completed_at and expires_at (given computed) are set when the job ends; its
-- events take seq_step numbers (a success's result, then its lifecycle event) above event_seq,
-- seq_floor and every stored event of the job. Each applied end gets its attempt row (start_seq
-- 0: the job's event_seq before the change), and the continuations of the jobs that ended are
-- settled. Answers one row per applied end (what its lifecycle event says), then the
-- continuations' status changes.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @now datetime2(6) = ?;
DECLARE @ends nvarchar(max) = ?;
DECLARE @events nvarchar(max) = ?;
DECLARE @default_ttl float = ?;
DECLARE @end TABLE (
    ord               int NOT NULL PRIMARY KEY,
    id                uniqueidentifier NOT NULL,
    owner             nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
    attempt           int NOT NULL,
    cancel_requested  bit NOT NULL,
    status            nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
    attempt_change    int NOT NULL,
    recorded          nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
    error_effect      nvarchar(8) COLLATE Latin1_General_100_BIN2 NOT NULL,
    error             nvarchar(max) NULL,
    traceback_effect  nvarchar(8) COLLATE Latin1_General_100_BIN2 NOT NULL,
    traceback         nvarchar(max) NULL,
    result            nvarchar(max) NULL,
    run_at            datetime2(6) NULL,
    ends              bit NOT NULL,
    expires_at        datetime2(6) NOT NULL,
    seq_floor         bigint NOT NULL,
    seq_step          int NOT NULL,
    started_at        datetime2(6) NOT NULL,
    ended_at          datetime2(6) NOT NULL,
    start_seq         bigint NOT NULL
);
DECLARE @new_events TABLE (
    ord          int NOT NULL PRIMARY KEY,
    job_id       uniqueidentifier NOT NULL,
    seq          bigint NOT NULL,
    kind         nvarchar(32) COLLATE Latin1_General_100_BIN2 NOT NULL,
    occurred_at  datetime2(6) NOT NULL,
    payload      nvarchar(max) NOT NULL,
    transient    bit NOT NULL,
    owner        nvarchar(400) NULL,
    attempt      int NULL
);
DECLARE @applied TABLE (
    ord                int NOT NULL PRIMARY KEY,
    id                 uniqueidentifier NOT NULL,
    status             nvarchar(16) NOT NULL,
    has_continuations  bit NOT NULL,
    attempt            int NOT NULL,
    event_seq          bigint NOT NULL,
    error              nvarchar(max) NULL,
    run_at             datetime2(6) NOT NULL,
    old_seq            bigint NOT NULL
);
DECLARE @ended_parents nvarchar(max);
DECLARE @settled nvarchar(max);
INSERT INTO @end (
    ord, id, owner, attempt, cancel_requested, status, attempt_change, recorded, error_effect,
    error, traceback_effect, traceback, result, run_at, ends, expires_at, seq_floor, seq_step,
    started_at, ended_at, start_seq
)
SELECT CAST(a.[key] AS int), e.id, e.owner, e.attempt, e.cancel_requested, e.status,
    e.attempt_change, e.recorded, e.error_effect, e.error, e.traceback_effect, e.traceback,
    e.result, e.run_at, e.ends, e.expires_at, e.seq_floor, e.seq_step, e.started_at,
    e.ended_at, e.start_seq
FROM OPENJSON(@ends) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (
    id                uniqueidentifier '$.id',
    owner             nvarchar(max) '$.owner',
    attempt           int '$.attempt',
    cancel_requested  bit '$.cancel_requested',
    status            nvarchar(max) '$.status',
    attempt_change    int '$.attempt_change',
    recorded          nvarchar(max) '$.recorded',
    error_effect      nvarchar(max) '$.error_effect',
    error             nvarchar(max) '$.error',
    traceback_effect  nvarchar(max) '$.traceback_effect',
    traceback         nvarchar(max) '$.traceback',
    result            nvarchar(max) '$.result',
    run_at            datetime2(6) '$.run_at',
    ends              bit '$.ends',
    expires_at        datetime2(6) '$.expires_at',
    seq_floor         bigint '$.seq_floor',
    seq_step          int '$.seq_step',
    started_at        datetime2(6) '$.started_at',
    ended_at          datetime2(6) '$.ended_at',
    start_seq         bigint '$.start_seq'
) AS e;
INSERT INTO @new_events (ord, job_id, seq, kind, occurred_at, payload, transient, owner, attempt)
SELECT CAST(a.[key] AS int), e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient,
    e.owner, e.attempt
FROM OPENJSON(@events) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (
    job_id       uniqueidentifier '$.job_id',
    seq          bigint '$.seq',
    kind         nvarchar(max) '$.kind',
    occurred_at  datetime2(6) '$.occurred_at',
    payload      nvarchar(max) '$.payload',
    transient    bit '$.transient',
    owner        nvarchar(400) '$.owner',
    attempt      int '$.attempt'
) AS e;
BEGIN TRANSACTION;
-- The attempts' events first, then their ends (numbered after the events' last sequence).
INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
SELECT e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient
FROM @new_events AS e
WHERE NOT EXISTS (SELECT 1 FROM @new_events AS f
                  WHERE f.job_id = e.job_id AND f.seq = e.seq AND f.ord < e.ord)
  AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_events AS s
                  WHERE s.job_id = e.job_id AND s.seq = e.seq)
  -- An attempt's event only while that attempt may still write (storage/event_log.py).
  AND (e.owner IS NULL OR EXISTS (
      SELECT 1 FROM __SCHEMA__.jobs AS j
      WHERE j.id = e.job_id AND j.attempt = e.attempt
        AND (j.lease_owner IS NULL OR j.lease_owner = e.owner)
        AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_attempts AS x
                        WHERE x.job_id = e.job_id AND x.attempt = e.attempt
                          AND x.outcome = N'lost')))
ORDER BY e.ord;
UPDATE j
SET status = e.status,
    attempt = j.attempt + e.attempt_change,
    started_at = CASE WHEN e.attempt_change < 0 THEN NULL ELSE j.started_at END,
    result = COALESCE(e.result, j.result),
    error = CASE e.error_effect WHEN N'set' THEN e.error WHEN N'clear' THEN NULL
                 ELSE j.error END,
    traceback = CASE e.traceback_effect WHEN N'set' THEN e.traceback WHEN N'clear' THEN NULL
                     ELSE j.traceback END,
    run_at = COALESCE(e.run_at, j.run_at),
    completed_at = CASE WHEN e.ends = 1 THEN @now ELSE j.completed_at END,
    expires_at = CASE WHEN e.ends = 1 THEN e.expires_at ELSE j.expires_at END,
    lease_owner = NULL,
    lease_expires_at = NULL,
    -- GREATEST is SQL Server 2022 only.
    event_seq = CASE WHEN j.event_seq >= e.seq_floor AND j.event_seq >= stored.seq THEN j.event_seq
                     WHEN e.seq_floor >= stored.seq THEN e.seq_floor
                     ELSE stored.seq END + e.seq_step
OUTPUT e.ord, inserted.id, inserted.status, inserted.has_continuations, inserted.attempt,
    inserted.event_seq, inserted.error, inserted.run_at, deleted.event_seq
    INTO @applied (ord, id, status, has_continuations, attempt, event_seq, error, run_at, old_seq)
FROM __SCHEMA__.jobs AS j
JOIN @end AS e
    ON j.id = e.id AND j.lease_owner = e.owner AND j.attempt = e.attempt
   AND j.cancel_requested = e.cancel_requested
CROSS APPLY (SELECT COALESCE(MAX(s.seq), 0) AS seq FROM __SCHEMA__.job_events AS s
             WHERE s.job_id = j.id) AS stored
WHERE j.status = N'running';
INSERT INTO __SCHEMA__.job_attempts
    (job_id, attempt, worker, started_at, ended_at, outcome, error, traceback,
     start_seq, end_seq, end_status, end_attempt, end_error, end_run_at)
SELECT e.id, e.attempt, e.owner, e.started_at, e.ended_at, e.recorded, e.error, e.traceback,
    CASE WHEN e.start_seq > 0 THEN e.start_seq ELSE a.old_seq END,
    a.event_seq, a.status, a.attempt, a.error, a.run_at
FROM @applied AS a
JOIN @end AS e ON e.ord = a.ord
ORDER BY a.ord;
SET @ended_parents = (SELECT a.id FROM @applied AS a
                      JOIN @end AS e ON e.ord = a.ord
                      WHERE e.ends = 1 AND a.has_continuations = 1
                      FOR JSON PATH);
IF @ended_parents IS NOT NULL
    EXEC __SCHEMA__.settle_continuations
        @parents = @ended_parents, @now = @now, @default_ttl = @default_ttl,
        @changes = @settled OUTPUT;
-- Each end applied, with what its lifecycle event records.
SELECT id, status, attempt, event_seq, error, run_at FROM @applied ORDER BY ord;
SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
FROM OPENJSON(COALESCE(@settled, N'[]')) WITH (
    id         uniqueidentifier '$.id',
    event_seq  bigint '$.event_seq',
    status     nvarchar(16) '$.status',
    attempt    int '$.attempt',
    error      nvarchar(max) '$.error',
    run_at     datetime2(6) '$.run_at'
) AS c;
COMMIT TRANSACTION;

-- name: lock_leases
-- The leases of one owner (@expired = 0), or up to @limit expired ones (@expired = 1), locked
-- until the transaction they are ended in (end_attempts) commits; rows another session holds
-- are skipped (READPAST).
SET NOCOUNT ON;
DECLARE @expired bit = ?;
DECLARE @owner nvarchar(400) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @limit int = ?;
SELECT TOP (@limit) id, attempt, max_attempts, lease_owner, started_at, cancel_requested,
    event_seq
FROM __SCHEMA__.jobs WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)
WHERE status = N'running'
  AND ((@expired = 0 AND lease_owner = @owner)
       OR (@expired = 1 AND lease_expires_at < @now));

-- name: leased_job_ids
-- The running jobs one owner holds (@expired = 0), or those whose lease has expired.
SET NOCOUNT ON;
DECLARE @expired bit = ?;
DECLARE @owner nvarchar(400) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @limit int = ?;
SELECT TOP (@limit) id FROM __SCHEMA__.jobs
WHERE status = N'running'
  AND ((@expired = 0 AND lease_owner = @owner)
       OR (@expired = 1 AND lease_expires_at < @now));

-- name: cancel
-- A waiting job is cancelled at once, with the continuations waiting on it; a running one is
-- flagged for its worker (which polls for cancel requests). Answers the status it had (NULL:
-- no such job), whether it was cancelled, and whether it was asked to stop; then the status
-- changes (the job's and its continuations').
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @id uniqueidentifier = ?;
DECLARE @reason nvarchar(max) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @default_ttl float = ?;
DECLARE @status nvarchar(16);
DECLARE @cancelled bit = 0;
DECLARE @requested bit = 0;
DECLARE @parents nvarchar(max);
DECLARE @settled nvarchar(max);
DECLARE @changes TABLE (
    id         uniqueidentifier NOT NULL,
    event_seq  bigint NOT NULL,
    status     nvarchar(16) NOT NULL,
    attempt    int NOT NULL,
    error      nvarchar(max) NULL,
    run_at     datetime2(6) NOT NULL
);
BEGIN TRANSACTION;
SELECT @status = j.status FROM __SCHEMA__.jobs AS j WITH (UPDLOCK, ROWLOCK) WHERE j.id = @id;
IF @status IN (N'queued', N'scheduled', N'awaiting', N'failed')
BEGIN
    UPDATE __SCHEMA__.jobs
    SET status = N'cancelled', error = @reason, traceback = NULL, completed_at = @now,
        expires_at = __SCHEMA__.add_seconds(@now, COALESCE(result_ttl, @default_ttl)),
        lease_owner = NULL, lease_expires_at = NULL, event_seq = event_seq + 1
    OUTPUT inserted.id, inserted.event_seq, inserted.status, inserted.attempt, inserted.error,
        inserted.run_at
    INTO @changes (id, event_seq, status, attempt, error, run_at)
    WHERE id = @id;
    SET @cancelled = 1;
    SET @parents = (SELECT @id AS id FOR JSON PATH);
    EXEC __SCHEMA__.settle_continuations
        @parents = @parents, @now = @now, @default_ttl = @default_ttl,
        @changes = @settled OUTPUT;
END
ELSE IF @status = N'running'
BEGIN
    UPDATE __SCHEMA__.jobs SET cancel_requested = 1, error = @reason WHERE id = @id;
    SET @requested = 1;
END;
SELECT @status, @cancelled, @requested;
SELECT id, event_seq, status, attempt, error, run_at FROM @changes
UNION ALL
SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
FROM OPENJSON(COALESCE(@settled, N'[]')) WITH (
    id         uniqueidentifier '$.id',
    event_seq  bigint '$.event_seq',
    status     nvarchar(16) '$.status',
    attempt    int '$.attempt',
    error      nvarchar(max) '$.error',
    run_at     datetime2(6) '$.run_at'
) AS c;
COMMIT TRANSACTION;

-- name: cancel_requests
SET NOCOUNT ON;
DECLARE @owner nvarchar(400) = ?;
SELECT id FROM __SCHEMA__.jobs
WHERE lease_owner = @owner AND status = N'running' AND cancel_requested = 1;

-- name: retry_dead
-- A dead job is queued again, with one more attempt if it had used them all. Answers the
-- status it had (NULL: no such job) and whether it was retried; then its status change.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @id uniqueidentifier = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @status nvarchar(16);
DECLARE @changes TABLE (
    id         uniqueidentifier NOT NULL,
    event_seq  bigint NOT NULL,
    status     nvarchar(16) NOT NULL,
    attempt    int NOT NULL,
    error      nvarchar(max) NULL,
    run_at     datetime2(6) NOT NULL
);
BEGIN TRANSACTION;
SELECT @status = j.status FROM __SCHEMA__.jobs AS j WITH (UPDLOCK, ROWLOCK) WHERE j.id = @id;
IF @status = N'dead'
    UPDATE __SCHEMA__.jobs
    SET status = N'queued', run_at = @now,
        max_attempts = CASE WHEN max_attempts > attempt + 1 THEN max_attempts
                            ELSE attempt + 1 END,
        error = NULL, traceback = NULL, completed_at = NULL, expires_at = NULL,
        cancel_requested = 0, event_seq = event_seq + 1
    OUTPUT inserted.id, inserted.event_seq, inserted.status, inserted.attempt, inserted.error,
        inserted.run_at
    INTO @changes (id, event_seq, status, attempt, error, run_at)
    WHERE id = @id;
SELECT @status, CAST(CASE WHEN @status = N'dead' THEN 1 ELSE 0 END AS bit);
SELECT id, event_seq, status, attempt, error, run_at FROM @changes;
COMMIT TRANSACTION;

-- name: delete_job
-- A job that is not running, with its attempts and events; continuations waiting on it are
-- cancelled ("no longer exists"). Answers the status it had (NULL: no such job) and whether it
-- was deleted; then the continuations' status changes.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @id uniqueidentifier = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @default_ttl float = ?;
DECLARE @status nvarchar(16);
DECLARE @deleted bit = 0;
DECLARE @parents nvarchar(max);
DECLARE @settled nvarchar(max);
BEGIN TRANSACTION;
SELECT @status = j.status FROM __SCHEMA__.jobs AS j WITH (UPDLOCK, ROWLOCK) WHERE j.id = @id;
IF @status IS NOT NULL AND @status <> N'running'
BEGIN
    DELETE FROM __SCHEMA__.job_attempts WHERE job_id = @id;
    DELETE FROM __SCHEMA__.job_events WHERE job_id = @id;
    DELETE FROM __SCHEMA__.jobs WHERE id = @id;
    SET @deleted = 1;
    SET @parents = (SELECT @id AS id FOR JSON PATH);
    EXEC __SCHEMA__.settle_continuations
        @parents = @parents, @now = @now, @default_ttl = @default_ttl,
        @changes = @settled OUTPUT;
END;
SELECT @status, @deleted;
SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
FROM OPENJSON(COALESCE(@settled, N'[]')) WITH (
    id         uniqueidentifier '$.id',
    event_seq  bigint '$.event_seq',
    status     nvarchar(16) '$.status',
    attempt    int '$.attempt',
    error      nvarchar(max) '$.error',
    run_at     datetime2(6) '$.run_at'
) AS c;
COMMIT TRANSACTION;

-- name: resolve_continuations
-- Repair sweep: settle awaiting jobs whose parent has ended (or is gone), up to @limit parents.
-- Answers how many jobs it changed, then their status changes.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @limit int = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @default_ttl float = ?;
DECLARE @parents nvarchar(max);
DECLARE @settled nvarchar(max);
BEGIN TRANSACTION;
SET @parents = (
    SELECT TOP (@limit) o.id
    FROM (SELECT DISTINCT c.continues_job_id AS id
          FROM __SCHEMA__.jobs AS c
          LEFT JOIN __SCHEMA__.jobs AS p ON p.id = c.continues_job_id
          WHERE c.status = N'awaiting' AND c.continues_job_id IS NOT NULL
            AND (p.id IS NULL OR p.status IN (N'succeeded', N'dead', N'cancelled'))) AS o
    FOR JSON PATH
);
IF @parents IS NOT NULL
    EXEC __SCHEMA__.settle_continuations
        @parents = @parents, @now = @now, @default_ttl = @default_ttl,
        @changes = @settled OUTPUT;
SELECT COUNT(*) FROM OPENJSON(COALESCE(@settled, N'[]'));
SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at
FROM OPENJSON(COALESCE(@settled, N'[]')) WITH (
    id         uniqueidentifier '$.id',
    event_seq  bigint '$.event_seq',
    status     nvarchar(16) '$.status',
    attempt    int '$.attempt',
    error      nvarchar(max) '$.error',
    run_at     datetime2(6) '$.run_at'
) AS c;
COMMIT TRANSACTION;

-- name: read_events
-- The rows a page of a job's events is read from, as one moment of the database: the job's row
-- (status, attempt, started_at, event_seq, result), its attempts' rows that record events after
-- @after_seq, and up to @limit of its stored events after @after_seq, in order (transient ones
-- only when @transient = 1); the backend merges them (storage/event_log.py).
-- The job's row is read first and stays locked shared until the commit: every change of the job
-- updates that row before it writes the job's attempt rows, so none is half seen. Event rows of
-- a transaction that has not committed are skipped (READPAST): those of an outcome that has not
-- yet updated the job (it waits for this read) belong to a later moment, and rows being deleted
-- to a job that is going.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @job_id uniqueidentifier = ?;
DECLARE @after_seq bigint = ?;
DECLARE @limit int = ?;
DECLARE @transient bit = ?;
BEGIN TRANSACTION;
SELECT status, attempt, started_at, event_seq, result
FROM __SCHEMA__.jobs WITH (ROWLOCK, HOLDLOCK)
WHERE id = @job_id;
SELECT attempt, started_at, ended_at, start_seq, end_seq, end_status, end_attempt, end_error,
    end_run_at
FROM __SCHEMA__.job_attempts WITH (READCOMMITTEDLOCK, READPAST)
WHERE job_id = @job_id AND (start_seq > @after_seq OR end_seq > @after_seq)
ORDER BY id;
SELECT TOP (@limit) seq, kind, occurred_at, payload
FROM __SCHEMA__.job_events WITH (READCOMMITTEDLOCK, READPAST)
WHERE job_id = @job_id AND seq > @after_seq AND (@transient = 1 OR transient = 0)
ORDER BY seq;
COMMIT TRANSACTION;

-- name: store_events
-- Events (a JSON array of {"job_id", "seq", "kind", "occurred_at", "payload", "transient",
-- "owner", "attempt"}), in one statement; one whose (job, seq) is already stored, or comes
-- earlier in the array, is dropped, and so is an attempt's (owner not null) that may no longer
-- write.
SET NOCOUNT ON;
DECLARE @events nvarchar(max) = ?;
DECLARE @new_events TABLE (
    ord          int NOT NULL PRIMARY KEY,
    job_id       uniqueidentifier NOT NULL,
    seq          bigint NOT NULL,
    kind         nvarchar(32) COLLATE Latin1_General_100_BIN2 NOT NULL,
    occurred_at  datetime2(6) NOT NULL,
    payload      nvarchar(max) NOT NULL,
    transient    bit NOT NULL,
    owner        nvarchar(400) NULL,
    attempt      int NULL
);
INSERT INTO @new_events (ord, job_id, seq, kind, occurred_at, payload, transient, owner, attempt)
SELECT CAST(a.[key] AS int), e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient,
    e.owner, e.attempt
FROM OPENJSON(@events) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (
    job_id       uniqueidentifier '$.job_id',
    seq          bigint '$.seq',
    kind         nvarchar(max) '$.kind',
    occurred_at  datetime2(6) '$.occurred_at',
    payload      nvarchar(max) '$.payload',
    transient    bit '$.transient',
    owner        nvarchar(400) '$.owner',
    attempt      int '$.attempt'
) AS e;
INSERT INTO __SCHEMA__.job_events (job_id, seq, kind, occurred_at, payload, transient)
SELECT e.job_id, e.seq, e.kind, e.occurred_at, e.payload, e.transient
FROM @new_events AS e
WHERE NOT EXISTS (SELECT 1 FROM @new_events AS f
                  WHERE f.job_id = e.job_id AND f.seq = e.seq AND f.ord < e.ord)
  AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_events AS s
                  WHERE s.job_id = e.job_id AND s.seq = e.seq)
  -- An attempt's event only while that attempt may still write (storage/event_log.py).
  AND (e.owner IS NULL OR EXISTS (
      SELECT 1 FROM __SCHEMA__.jobs AS j
      WHERE j.id = e.job_id AND j.attempt = e.attempt
        AND (j.lease_owner IS NULL OR j.lease_owner = e.owner)
        AND NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_attempts AS x
                        WHERE x.job_id = e.job_id AND x.attempt = e.attempt
                          AND x.outcome = N'lost')))
ORDER BY e.ord;

-- name: purge_transient_events
SET NOCOUNT ON;
DECLARE @before datetime2(6) = ?;
DECLARE @limit int = ?;
DECLARE @purged int;
DELETE TOP (@limit) FROM __SCHEMA__.job_events
WHERE transient = 1 AND occurred_at < @before;
SET @purged = @@ROWCOUNT;
SELECT @purged;

-- name: set_queue_paused
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @queue nvarchar(max) = ?;
DECLARE @paused bit = ?;
DECLARE @now datetime2(6) = ?;
BEGIN TRANSACTION;
UPDATE __SCHEMA__.queue_state WITH (UPDLOCK, SERIALIZABLE)
SET paused = @paused, updated_at = @now
WHERE queue = @queue;
IF @@ROWCOUNT = 0
    INSERT INTO __SCHEMA__.queue_state (queue, paused, updated_at) VALUES (@queue, @paused, @now);
COMMIT TRANSACTION;

-- name: paused_queues
SELECT queue FROM __SCHEMA__.queue_state WHERE paused = 1;

-- name: queue_counts
SELECT queue, status, COUNT(*) FROM __SCHEMA__.jobs GROUP BY queue, status;

-- name: queue_states
SELECT queue, paused FROM __SCHEMA__.queue_state;

-- name: get_job
SET NOCOUNT ON;
DECLARE @id uniqueidentifier = ?;
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM __SCHEMA__.jobs WHERE id = @id;

-- name: list_jobs
-- Newest first by id: the id's text (id_text; uniqueidentifier does not sort by time) walked
-- backwards on jobs_listing from a page's last id (keyset paging), and key lookups for the rows
-- that pass. The filter is a JSON object whose absent or null fields do not filter; search_types
-- is found in the lower-cased job type, search_ids (when given) in the id's text.
SET NOCOUNT ON;
DECLARE @filter nvarchar(max) = ?;
DECLARE @limit int = ?;
DECLARE @offset int = ?;
DECLARE @status nvarchar(16), @kind nvarchar(16), @job_type nvarchar(max), @queue nvarchar(max),
    @idempotency_key nvarchar(max), @search_types nvarchar(max), @search_ids nvarchar(36),
    @before uniqueidentifier;
SELECT @status = f.status, @kind = f.kind, @job_type = f.job_type, @queue = f.queue,
    @idempotency_key = f.idempotency_key, @search_types = f.search_types,
    @search_ids = UPPER(f.search_ids), @before = f.before
FROM OPENJSON(@filter) WITH (
    status           nvarchar(16) '$.status',
    kind             nvarchar(16) '$.kind',
    job_type         nvarchar(max) '$.job_type',
    queue            nvarchar(max) '$.queue',
    idempotency_key  nvarchar(max) '$.idempotency_key',
    search_types     nvarchar(max) '$.search_types',
    search_ids       nvarchar(36) '$.search_ids',
    before           uniqueidentifier '$.before'
) AS f;
SELECT id, job_type, queue, priority, status, args, attempt, max_attempts, enqueued_at, run_at,
    started_at, completed_at, lease_owner, lease_expires_at, idempotency_key, continues_job_id,
    result, error, traceback, result_ttl, expires_at, kind
FROM __SCHEMA__.jobs
WHERE (@before IS NULL OR id_text < CONVERT(char(36), @before))
  AND (@status IS NULL OR status = @status)
  AND (@kind IS NULL OR kind = @kind)
  AND (@job_type IS NULL OR job_type = @job_type)
  AND (@queue IS NULL OR queue = @queue)
  AND (@idempotency_key IS NULL OR idempotency_key = @idempotency_key)
  AND (@search_types IS NULL
       OR CHARINDEX(@search_types, LOWER(job_type)) > 0
       OR (@search_ids IS NOT NULL AND CHARINDEX(@search_ids, id_text) > 0))
ORDER BY id_text DESC
OFFSET @offset ROWS FETCH NEXT @limit ROWS ONLY
OPTION (RECOMPILE);

-- name: list_jobs_walk
-- list_jobs with a scan limit: one statement takes the ids of at most @scan_limit rows below
-- @before, newest first, from jobs_listing; the page is those of them that pass every filter.
-- The second result set is the last id taken, when the walk took all @scan_limit (the next page
-- starts below it when this one is not full).
SET NOCOUNT ON;
DECLARE @filter nvarchar(max) = ?;
DECLARE @limit int = ?;
DECLARE @offset int = ?;
DECLARE @scan_limit int = ?;
DECLARE @status nvarchar(16), @kind nvarchar(16), @job_type nvarchar(max), @queue nvarchar(max),
    @idempotency_key nvarchar(max), @search_types nvarchar(max), @search_ids nvarchar(36),
    @before uniqueidentifier;
DECLARE @walked TABLE (id_text char(36) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY);
SELECT @status = f.status, @kind = f.kind, @job_type = f.job_type, @queue = f.queue,
    @idempotency_key = f.idempotency_key, @search_types = f.search_types,
    @search_ids = UPPER(f.search_ids), @before = f.before
FROM OPENJSON(@filter) WITH (
    status           nvarchar(16) '$.status',
    kind             nvarchar(16) '$.kind',
    job_type         nvarchar(max) '$.job_type',
    queue            nvarchar(max) '$.queue',
    idempotency_key  nvarchar(max) '$.idempotency_key',
    search_types     nvarchar(max) '$.search_types',
    search_ids       nvarchar(36) '$.search_ids',
    before           uniqueidentifier '$.before'
) AS f;
INSERT INTO @walked (id_text)
SELECT TOP (@scan_limit) id_text FROM __SCHEMA__.jobs
WHERE (@before IS NULL OR id_text < CONVERT(char(36), @before))
ORDER BY id_text DESC
OPTION (RECOMPILE);
SELECT j.id, j.job_type, j.queue, j.priority, j.status, j.args, j.attempt, j.max_attempts,
    j.enqueued_at, j.run_at, j.started_at, j.completed_at, j.lease_owner, j.lease_expires_at,
    j.idempotency_key, j.continues_job_id, j.result, j.error, j.traceback, j.result_ttl,
    j.expires_at, j.kind
FROM @walked AS w
JOIN __SCHEMA__.jobs AS j ON j.id_text = w.id_text
WHERE (@status IS NULL OR j.status = @status)
  AND (@kind IS NULL OR j.kind = @kind)
  AND (@job_type IS NULL OR j.job_type = @job_type)
  AND (@queue IS NULL OR j.queue = @queue)
  AND (@idempotency_key IS NULL OR j.idempotency_key = @idempotency_key)
  AND (@search_types IS NULL
       OR CHARINDEX(@search_types, LOWER(j.job_type)) > 0
       OR (@search_ids IS NOT NULL AND CHARINDEX(@search_ids, j.id_text) > 0))
ORDER BY w.id_text DESC
OFFSET @offset ROWS FETCH NEXT @limit ROWS ONLY
OPTION (RECOMPILE);
SELECT TOP (1) CONVERT(uniqueidentifier, w.id_text) FROM @walked AS w
WHERE (SELECT COUNT(*) FROM @walked) >= @scan_limit
ORDER BY w.id_text ASC;

-- name: throughput
-- Attempts that ended in [@since, @until), by bucket of @bucket seconds from @since and
-- outcome (a lost attempt is `dead` when its job died of it, else `failed`; released ones are
-- left out), read through job_attempts_ended.
SET NOCOUNT ON;
DECLARE @since datetime2(6) = ?;
DECLARE @until datetime2(6) = ?;
DECLARE @bucket int = ?;
SELECT c.bucket, c.counted, COUNT(*)
FROM (
    SELECT CAST(DATEDIFF_BIG(millisecond, @since, a.ended_at) / (@bucket * 1000) AS int)
               AS bucket,
        CASE WHEN a.outcome <> N'lost' THEN a.outcome
             WHEN a.end_status = N'dead' THEN N'dead'
             ELSE N'failed' END AS counted
    FROM __SCHEMA__.job_attempts AS a
    WHERE a.ended_at >= @since AND a.ended_at < @until
      AND a.outcome IN (N'succeeded', N'failed', N'dead', N'cancelled', N'lost')
) AS c
GROUP BY c.bucket, c.counted;

-- name: count_by_status
SELECT status, COUNT(*) FROM __SCHEMA__.jobs GROUP BY status;

-- name: list_attempts
SET NOCOUNT ON;
DECLARE @job_id uniqueidentifier = ?;
SELECT job_id, attempt, worker, started_at, ended_at, outcome, error, traceback
FROM __SCHEMA__.job_attempts WHERE job_id = @job_id ORDER BY id;

-- name: purge_expired
-- Up to @limit finished jobs past their result TTL, with their attempts and events.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @now datetime2(6) = ?;
DECLARE @limit int = ?;
DECLARE @doomed TABLE (id uniqueidentifier NOT NULL PRIMARY KEY);
DECLARE @deleted int;
BEGIN TRANSACTION;
INSERT INTO @doomed (id)
SELECT TOP (@limit) id FROM __SCHEMA__.jobs WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)
WHERE expires_at <= @now
ORDER BY expires_at;
DELETE FROM __SCHEMA__.job_attempts WHERE job_id IN (SELECT id FROM @doomed);
DELETE FROM __SCHEMA__.job_events WHERE job_id IN (SELECT id FROM @doomed);
DELETE FROM __SCHEMA__.jobs WHERE id IN (SELECT id FROM @doomed);
SET @deleted = @@ROWCOUNT;
SELECT @deleted;
COMMIT TRANSACTION;

-- name: lease_acquire
-- On the lease's own connection: take the session-owned application lock without waiting, and
-- record the term (for status). The lock lives as long as the session: a leader that dies or
-- loses its connection gives it up at once. Answers 1 if taken.
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @resource nvarchar(255) = ?;
DECLARE @holder nvarchar(400) = ?;
DECLARE @token nvarchar(64) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @until datetime2(6) = ?;
DECLARE @no_wait int = 0;
DECLARE @status int;
EXEC @status = sp_getapplock
    @Resource = @resource, @LockMode = N'Exclusive', @LockOwner = N'Session',
    @LockTimeout = @no_wait;
IF @status < 0
BEGIN
    SELECT 0;
    RETURN;
END;
UPDATE __SCHEMA__.leader_leases
SET holder = @holder, token = @token, since = @now, expires_at = @until
WHERE name = @lease_name;
IF @@ROWCOUNT = 0
    INSERT INTO __SCHEMA__.leader_leases (name, holder, token, since, expires_at)
    VALUES (@lease_name, @holder, @token, @now, @until);
SELECT 1;

-- name: lease_renew
-- The lease holds while this session holds the lock; the term row's expiry is only for status.
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @resource nvarchar(255) = ?;
DECLARE @token nvarchar(64) = ?;
DECLARE @until datetime2(6) = ?;
IF COALESCE(APPLOCK_MODE(N'public', @resource, N'Session'), N'NoLock') <> N'Exclusive'
BEGIN
    SELECT 0;
    RETURN;
END;
UPDATE __SCHEMA__.leader_leases SET expires_at = @until
WHERE name = @lease_name AND token = @token;
SELECT 1;

-- name: lease_release
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @resource nvarchar(255) = ?;
DECLARE @token nvarchar(64) = ?;
DELETE FROM __SCHEMA__.leader_leases WHERE name = @lease_name AND token = @token;
IF APPLOCK_MODE(N'public', @resource, N'Session') = N'Exclusive'
    EXEC sp_releaseapplock @Resource = @resource, @LockOwner = N'Session';

-- name: lease_current
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @now datetime2(6) = ?;
SELECT holder, token, since FROM __SCHEMA__.leader_leases
WHERE name = @lease_name AND expires_at >= @now;

-- Beat: recurring definitions and the leader's heartbeat --------------------------------------

-- name: upsert_recurring
-- Definitions from code (a JSON array): added, or their schedule and arguments updated.
-- `enabled` and the firing state are kept; a changed schedule is scheduled again from now.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @specs nvarchar(max) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @new TABLE (
    name      nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
    job_type  nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL,
    cron      nvarchar(200) NOT NULL,
    timezone  nvarchar(64) NOT NULL,
    args      nvarchar(max) NOT NULL
);
INSERT INTO @new (name, job_type, cron, timezone, args)
SELECT name, job_type, cron, timezone, args FROM OPENJSON(@specs) WITH (
    name      nvarchar(200) '$.name',
    job_type  nvarchar(400) '$.job_type',
    cron      nvarchar(200) '$.cron',
    timezone  nvarchar(64) '$.timezone',
    args      nvarchar(max) '$.args'
);
BEGIN TRANSACTION;
UPDATE r
SET next_fire_at = CASE WHEN r.cron = n.cron AND r.timezone = n.timezone
                        THEN r.next_fire_at END,
    job_type = n.job_type, cron = n.cron, timezone = n.timezone, args = n.args,
    updated_at = @now
FROM __SCHEMA__.recurring_jobs AS r WITH (UPDLOCK, SERIALIZABLE)
JOIN @new AS n ON n.name = r.name
WHERE r.job_type <> n.job_type OR r.cron <> n.cron OR r.timezone <> n.timezone
   OR r.args <> n.args;
INSERT INTO __SCHEMA__.recurring_jobs (name, job_type, cron, timezone, args, enabled, updated_at)
SELECT n.name, n.job_type, n.cron, n.timezone, n.args, 1, @now
FROM @new AS n
WHERE NOT EXISTS (SELECT 1 FROM __SCHEMA__.recurring_jobs AS r WITH (UPDLOCK, SERIALIZABLE)
                  WHERE r.name = n.name);
COMMIT TRANSACTION;

-- name: list_recurring
SELECT name, job_type, cron, timezone, args, enabled, last_fire_at, next_fire_at, updated_at
FROM __SCHEMA__.recurring_jobs ORDER BY name;

-- name: set_recurring_enabled
-- Enabling a disabled definition schedules it from now: the fires it missed are not caught up.
SET NOCOUNT ON;
DECLARE @recurring_name nvarchar(200) = ?;
DECLARE @enabled bit = ?;
DECLARE @now datetime2(6) = ?;
UPDATE __SCHEMA__.recurring_jobs
SET next_fire_at = CASE WHEN @enabled = 1 AND enabled = 0 THEN NULL ELSE next_fire_at END,
    enabled = @enabled, updated_at = @now
WHERE name = @recurring_name;
SELECT @@ROWCOUNT;

-- name: fire_recurring
-- In one transaction: move last_fire_at forward (the fire key's guard: an instant is fired at
-- most once) and enqueue the tick's job (a JSON object, with its idempotency key). Answers
-- (fired, created, job id): fired 0 stores nothing.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @recurring_name nvarchar(200) = ?;
DECLARE @instant datetime2(6) = ?;
DECLARE @next_fire_at datetime2(6) = ?;
DECLARE @job nvarchar(max) = ?;
DECLARE @key nvarchar(850);
DECLARE @holder uniqueidentifier;
BEGIN TRANSACTION;
UPDATE __SCHEMA__.recurring_jobs SET last_fire_at = @instant, next_fire_at = @next_fire_at
WHERE name = @recurring_name AND enabled = 1 AND (last_fire_at IS NULL OR last_fire_at < @instant);
IF @@ROWCOUNT = 0
BEGIN
    ROLLBACK TRANSACTION;
    SELECT CAST(0 AS bit), CAST(0 AS bit), CAST(NULL AS uniqueidentifier);
    RETURN;
END;
SET @key = JSON_VALUE(@job, '$.idempotency_key');
SELECT @holder = h.id FROM __SCHEMA__.jobs AS h WITH (UPDLOCK, HOLDLOCK)
WHERE h.idempotency_key = @key;
IF @holder IS NOT NULL
BEGIN
    SELECT CAST(1 AS bit), CAST(0 AS bit), @holder;
    COMMIT TRANSACTION;
    RETURN;
END;
INSERT INTO __SCHEMA__.jobs (
    id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, result_ttl, kind, trace_context
)
SELECT id, job_type, queue, priority, status, args, max_attempts, enqueued_at, run_at,
    idempotency_key, result_ttl, kind, trace_context
FROM OPENJSON(@job) WITH (
    id                uniqueidentifier '$.id',
    job_type          nvarchar(400) '$.job_type',
    queue             nvarchar(200) '$.queue',
    priority          int '$.priority',
    status            nvarchar(16) '$.status',
    args              nvarchar(max) '$.args',
    max_attempts      int '$.max_attempts',
    enqueued_at       datetime2(6) '$.enqueued_at',
    run_at            datetime2(6) '$.run_at',
    idempotency_key   nvarchar(850) '$.idempotency_key',
    result_ttl        float '$.result_ttl',
    kind              nvarchar(16) '$.kind',
    trace_context     nvarchar(1024) '$.trace_context'
);
SELECT CAST(1 AS bit), CAST(1 AS bit), CAST(JSON_VALUE(@job, '$.id') AS uniqueidentifier);
COMMIT TRANSACTION;

-- name: advance_recurring
SET NOCOUNT ON;
DECLARE @recurring_name nvarchar(200) = ?;
DECLARE @next_fire_at datetime2(6) = ?;
UPDATE __SCHEMA__.recurring_jobs SET next_fire_at = @next_fire_at
WHERE name = @recurring_name AND enabled = 1
  AND (next_fire_at IS NULL OR next_fire_at < @next_fire_at);

-- name: record_beat_leader
-- A newer term replaces an older one; a stale leader (stalled, then resumed) cannot overwrite a
-- newer live term.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @holder nvarchar(400) = ?;
DECLARE @mechanism nvarchar(64) = ?;
DECLARE @token nvarchar(64) = ?;
DECLARE @since datetime2(6) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @expires_at datetime2(6) = ?;
BEGIN TRANSACTION;
UPDATE __SCHEMA__.beat_leaders WITH (UPDLOCK, SERIALIZABLE)
SET holder = @holder, mechanism = @mechanism, token = @token, since = @since,
    renewed_at = @now, expires_at = @expires_at
WHERE name = @lease_name AND (token = @token OR expires_at < @now OR since < @since);
IF @@ROWCOUNT = 0 AND NOT EXISTS (
    SELECT 1 FROM __SCHEMA__.beat_leaders WITH (UPDLOCK, SERIALIZABLE) WHERE name = @lease_name
)
    INSERT INTO __SCHEMA__.beat_leaders
        (name, holder, mechanism, token, since, renewed_at, expires_at)
    VALUES (@lease_name, @holder, @mechanism, @token, @since, @now, @expires_at);
COMMIT TRANSACTION;

-- name: clear_beat_leader
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @token nvarchar(64) = ?;
DELETE FROM __SCHEMA__.beat_leaders WHERE name = @lease_name AND token = @token;

-- name: beat_leader
SET NOCOUNT ON;
DECLARE @lease_name nvarchar(200) = ?;
DECLARE @now datetime2(6) = ?;
SELECT holder, mechanism, token, since, renewed_at, expires_at FROM __SCHEMA__.beat_leaders
WHERE name = @lease_name AND expires_at >= @now;

-- Worker registry ------------------------------------------------------------------------------

-- name: register_worker
-- A row marked gone that registers again is live again. @parent is N'' for none (a parameter is
-- never NULL), @queues a JSON array.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @id nvarchar(400) = ?;
DECLARE @parent nvarchar(400) = ?;
DECLARE @host nvarchar(255) = ?;
DECLARE @pid int = ?;
DECLARE @role nvarchar(32) = ?;
DECLARE @module nvarchar(400) = ?;
DECLARE @queues nvarchar(max) = ?;
DECLARE @slots int = ?;
DECLARE @running int = ?;
DECLARE @started_at datetime2(6) = ?;
DECLARE @now datetime2(6) = ?;
BEGIN TRANSACTION;
UPDATE __SCHEMA__.workers WITH (UPDLOCK, SERIALIZABLE)
SET parent = NULLIF(@parent, N''), host = @host, pid = @pid, role = @role, module = @module,
    queues = @queues, slots = @slots, running = @running, started_at = @started_at,
    last_heartbeat = @now, gone = 0
WHERE id = @id;
IF @@ROWCOUNT = 0
    INSERT INTO __SCHEMA__.workers
        (id, parent, host, pid, role, module, queues, slots, running, started_at,
         last_heartbeat, gone)
    VALUES (@id, NULLIF(@parent, N''), @host, @pid, @role, @module, @queues, @slots, @running,
            @started_at, @now, 0);
COMMIT TRANSACTION;

-- name: worker_heartbeat
-- Answers 1 if the row is there and live, else 0 (the process registers again). @figures N''
-- keeps what the row holds (a parameter is never NULL).
SET NOCOUNT ON;
DECLARE @id nvarchar(400) = ?;
DECLARE @running int = ?;
DECLARE @figures nvarchar(max) = ?;
DECLARE @now datetime2(6) = ?;
UPDATE __SCHEMA__.workers
SET last_heartbeat = @now, running = @running, figures = COALESCE(NULLIF(@figures, N''), figures)
WHERE id = @id AND gone = 0;
SELECT @@ROWCOUNT;

-- name: live_worker_figures
-- @parent N'' for every live row, else that supervisor's and its worker processes'.
SET NOCOUNT ON;
DECLARE @parent nvarchar(400) = ?;
SELECT id, figures FROM __SCHEMA__.workers
WHERE gone = 0 AND figures IS NOT NULL AND (@parent = N'' OR parent = @parent OR id = @parent)
ORDER BY id;

-- name: unregister_worker
SET NOCOUNT ON;
DECLARE @id nvarchar(400) = ?;
DELETE FROM __SCHEMA__.workers WHERE id = @id;

-- name: list_workers
SET NOCOUNT ON;
DECLARE @include_gone bit = ?;
SELECT id, parent, host, pid, role, module, queues, slots, running, started_at, last_heartbeat,
    gone
FROM __SCHEMA__.workers WHERE gone = 0 OR @include_gone = 1
ORDER BY host, started_at, id;

-- name: mark_workers_gone
SET NOCOUNT ON;
DECLARE @before datetime2(6) = ?;
UPDATE __SCHEMA__.workers SET gone = 1 WHERE gone = 0 AND last_heartbeat < @before;
SELECT @@ROWCOUNT;

-- name: purge_gone_workers
SET NOCOUNT ON;
DECLARE @before datetime2(6) = ?;
DELETE FROM __SCHEMA__.workers WHERE gone = 1 AND last_heartbeat < @before;
SELECT @@ROWCOUNT;

-- Job-type catalogue ---------------------------------------------------------------------------

-- name: upsert_job_types
-- Types from code (a JSON array of objects): added, or their row replaced but for first_seen.
-- Rows are locked in name order (the table variable's key), as on PostgreSQL.
SET NOCOUNT ON;
SET XACT_ABORT ON;
DECLARE @types nvarchar(max) = ?;
DECLARE @seen_by nvarchar(400) = ?;
DECLARE @now datetime2(6) = ?;
DECLARE @new TABLE (
    name          nvarchar(400) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
    kind          nvarchar(16) NOT NULL,
    display_name  nvarchar(400) NOT NULL,
    description   nvarchar(max) NOT NULL,
    icon          nvarchar(64) NULL,
    queue         nvarchar(200) NOT NULL,
    priority      int NOT NULL,
    max_attempts  int NOT NULL,
    cron          nvarchar(200) NULL,
    timezone      nvarchar(64) NULL,
    is_async      bit NOT NULL,
    args_schema   nvarchar(max) NULL,
    module        nvarchar(400) NOT NULL
);
INSERT INTO @new (name, kind, display_name, description, icon, queue, priority, max_attempts,
                  cron, timezone, is_async, args_schema, module)
SELECT name, kind, display_name, description, icon, queue, priority, max_attempts, cron,
       timezone, is_async, args_schema, module
FROM OPENJSON(@types) WITH (
    name          nvarchar(400) '$.name',
    kind          nvarchar(16) '$.kind',
    display_name  nvarchar(400) '$.display_name',
    description   nvarchar(max) '$.description',
    icon          nvarchar(64) '$.icon',
    queue         nvarchar(200) '$.queue',
    priority      int '$.priority',
    max_attempts  int '$.max_attempts',
    cron          nvarchar(200) '$.cron',
    timezone      nvarchar(64) '$.timezone',
    is_async      bit '$.is_async',
    args_schema   nvarchar(max) '$.args_schema',
    module        nvarchar(400) '$.module'
);
BEGIN TRANSACTION;
UPDATE t
SET kind = n.kind, display_name = n.display_name, description = n.description, icon = n.icon,
    queue = n.queue, priority = n.priority, max_attempts = n.max_attempts, cron = n.cron,
    timezone = n.timezone, is_async = n.is_async, args_schema = n.args_schema,
    module = n.module, seen_by = @seen_by, last_seen = @now
FROM __SCHEMA__.job_types AS t WITH (UPDLOCK, SERIALIZABLE)
JOIN @new AS n ON n.name = t.name;
INSERT INTO __SCHEMA__.job_types (name, kind, display_name, description, icon, queue, priority,
    max_attempts, cron, timezone, is_async, args_schema, module, seen_by, first_seen, last_seen)
SELECT n.name, n.kind, n.display_name, n.description, n.icon, n.queue, n.priority,
       n.max_attempts, n.cron, n.timezone, n.is_async, n.args_schema, n.module, @seen_by, @now,
       @now
FROM @new AS n
WHERE NOT EXISTS (SELECT 1 FROM __SCHEMA__.job_types AS t WITH (UPDLOCK, SERIALIZABLE)
                  WHERE t.name = n.name);
COMMIT TRANSACTION;

-- name: list_job_types
SELECT name, kind, display_name, description, icon, queue, priority, max_attempts, cron,
    timezone, is_async, args_schema, module, seen_by, first_seen, last_seen
FROM __SCHEMA__.job_types ORDER BY name;
