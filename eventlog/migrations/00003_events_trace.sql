-- The trace each event started, so the console can link to it.

-- +goose Up
ALTER TABLE events ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE events DROP COLUMN trace_id;
