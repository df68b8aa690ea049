-- jobworker schema for PostgreSQL, version 7: the beat leader's heartbeat. The leader writes its
-- term here at every renewal; workers skip lease rescue and the janitor while it is alive, and
-- `jobworker beat --status` reads who leads. (Version 6 belongs to the event columns.)

CREATE TABLE IF NOT EXISTS __SCHEMA__.beat_leaders (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    mechanism   text NOT NULL,
    token       text NOT NULL,
    since       timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (7) ON CONFLICT (version) DO NOTHING;
