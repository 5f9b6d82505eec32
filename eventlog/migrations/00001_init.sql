-- One schema for SQLite and PostgreSQL: only types and syntax both accept.
-- Times are Unix microseconds (BIGINT): both sort and compare them alike.

-- +goose Up
CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT '',
    node          TEXT NOT NULL DEFAULT '',
    event_time    BIGINT NOT NULL,
    event_key     TEXT NOT NULL DEFAULT '',
    level         TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL DEFAULT '',
    start_id      TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT '',
    account       TEXT NOT NULL DEFAULT '',
    domain        TEXT NOT NULL DEFAULT '',
    user_name     TEXT NOT NULL DEFAULT '',
    resource_id   TEXT NOT NULL DEFAULT '',
    resource_type TEXT NOT NULL DEFAULT '',
    data          TEXT NOT NULL DEFAULT '',
    archived      BOOLEAN NOT NULL DEFAULT FALSE,
    logged_at     BIGINT NOT NULL
);
-- Newest first within a type or an account, and by time alone.
CREATE INDEX events_time ON events (event_time, id);
CREATE INDEX events_type_time ON events (event_type, event_time, id);
CREATE INDEX events_account_time ON events (account, event_time, id);
CREATE INDEX events_start_id ON events (start_id);

-- batch and idx name the record in the attempts stream (the stream
-- sequence of its batch, its place in it), so a batch read twice after a
-- crash is logged once.
CREATE TABLE attempts (
    batch       BIGINT NOT NULL,
    idx         INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    sink        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 0,
    duration_us BIGINT NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    response    TEXT NOT NULL DEFAULT '',
    node        TEXT NOT NULL DEFAULT '',
    at          BIGINT NOT NULL,
    PRIMARY KEY (batch, idx)
);
CREATE INDEX attempts_event ON attempts (event_id, at);
CREATE INDEX attempts_at ON attempts (at);

-- +goose Down
DROP TABLE attempts;
DROP TABLE events;
