-- A sink's latest attempts, for the console's sink page.

-- +goose Up
CREATE INDEX attempts_sink_at ON attempts (sink, at);

-- +goose Down
DROP INDEX attempts_sink_at;
