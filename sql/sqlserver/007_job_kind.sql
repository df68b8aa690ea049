-- jobworker schema for SQL Server, version 7: a job's kind is stored with it, and jobs are listed
-- newest first by id, as on the other backends. Idempotent, as the baseline: every batch checks
-- before it changes.
--
-- kind comes from the job's definition (`@job(kind=...)`): `user` jobs are enqueued by
-- application code, `system` jobs belong to the platform, and the admin side may do more with
-- the latter. Rows written before this version are `user` jobs.
--
-- SQL Server orders uniqueidentifier by its last bytes first, so the id's time order is that of
-- its text: id_text (computed, not stored in the rows) is that text, in a binary collation, and
-- the listing walks the index jobs_listing on it backwards from a page's last id (keyset paging;
-- the id's text is also what a search by a piece of an id reads). The index costs an entry per
-- insert and per delete, not per status change (its key never changes). jobs_enqueued, which the
-- listing read before, is read by no statement any more and goes. No index on kind: a listing of
-- one kind walks jobs_listing and filters as it goes.

-- The session options that indexes on computed columns need (sqlcmd starts with
-- QUOTED_IDENTIFIER OFF).
SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
SET QUOTED_IDENTIFIER ON;
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'kind')
    ALTER TABLE __SCHEMA__.jobs ADD kind nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL
        CONSTRAINT jobs_kind_default DEFAULT N'user'
        CONSTRAINT jobs_kind_check CHECK (kind IN (N'user', N'system'));
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'id_text')
    ALTER TABLE __SCHEMA__.jobs
        ADD id_text AS CONVERT(char(36), id) COLLATE Latin1_General_100_BIN2;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_listing')
    CREATE INDEX jobs_listing ON __SCHEMA__.jobs (id_text);
GO

IF EXISTS (SELECT 1 FROM sys.indexes
           WHERE object_id = OBJECT_ID(N'__SCHEMA__.jobs') AND name = N'jobs_enqueued')
    DROP INDEX jobs_enqueued ON __SCHEMA__.jobs;
GO

IF NOT EXISTS (SELECT 1 FROM __SCHEMA__.jobworker_schema WHERE version = 7)
    INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (7);
GO
