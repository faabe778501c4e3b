-- Reducer snapshots: caches of the scheduler state at a seq, never the truth (the log is).
-- A snapshot is only used by the reducer version that wrote it; digest lets replay compare
-- "snapshot + tail" against a full replay.
CREATE TABLE snapshots (
    reducer_version TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    digest          TEXT    NOT NULL,
    state           BLOB    NOT NULL,
    created_ms      INTEGER NOT NULL,
    PRIMARY KEY (reducer_version, seq)
);
