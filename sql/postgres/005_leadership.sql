-- jobworker schema for PostgreSQL, version 5: who holds a leader lease (beat without Redis).
-- The lease itself is a session-level advisory lock on a dedicated connection: it ends when that
-- session does, so a leader that dies or loses its connection gives it up at once. This table
-- only records the current term, for `jobworker beat --status`.

CREATE TABLE IF NOT EXISTS __SCHEMA__.leader_terms (
    name    text PRIMARY KEY,
    holder  text NOT NULL,
    token   text NOT NULL,
    since   timestamptz NOT NULL
);

INSERT INTO __SCHEMA__.jobworker_schema (version) VALUES (5) ON CONFLICT (version) DO NOTHING;
