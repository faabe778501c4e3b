-- Projections: tables derived from the event log, each rebuildable from it
-- (`llamaswap-es rebuild-projections --db PATH`), in the same file as `events` so plain SQL
-- can join them.
--
-- projection_checkpoints: one row per projection. `seq` is the last event seq it applied;
-- `state` is the small JSON state it needs to continue from there (requests received but not
-- yet finished, models loading), written in the same transaction as its rows, so a restart
-- resumes exactly where it stopped and never counts an event twice.
CREATE TABLE projection_checkpoints (
    name       TEXT    PRIMARY KEY,
    seq        INTEGER NOT NULL DEFAULT 0,
    state      TEXT    NOT NULL DEFAULT '{}',
    updated_ms INTEGER NOT NULL DEFAULT 0
);

-- activity: one row per finished request (llama-swap's activity table, spec/api.md §16, with
-- its column names and defaults, plus ours). Token fields use -1 for "unknown" once the
-- response reported anything, 0 when nothing could be parsed.
--
-- id               llama-swap's integer activity id (what /api/captures/{id} takes); assigned
--                  in log order, so a rebuild gives every row the same id again.
-- request_id       our request id: the `key` of its events (join with `events`).
-- seq              the seq of the event that ended the request (RequestFinished or Reject).
-- ts_created       unix seconds, llama-swap's column; ts_ms the same instant in ms.
-- received_ms      when the request was received; dispatched_ms when it was dispatched.
-- queue_wait_ms    received -> dispatched (NULL if it never was).
-- swap_wait_ms     the part of the queue wait during which a swap for its model was under way
--                  (from SwapPlanned/StartProcess of that model to its ProcessReady).
-- duration_ms      like llama-swap: includes queueing and model load (queue wait + upstream).
CREATE TABLE activity (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        TEXT    NOT NULL UNIQUE,
    seq               INTEGER NOT NULL,
    ts_created        INTEGER NOT NULL,
    ts_ms             INTEGER NOT NULL,
    model_id          TEXT    NOT NULL,
    requested_model   TEXT    NOT NULL DEFAULT '',
    req_path          TEXT    NOT NULL DEFAULT '',
    method            TEXT    NOT NULL DEFAULT '',
    stream            INTEGER NOT NULL DEFAULT 0,
    resp_content_type TEXT    NOT NULL DEFAULT '',
    resp_status_code  INTEGER NOT NULL DEFAULT 0,
    cache_tokens      INTEGER NOT NULL DEFAULT 0,
    draft_tokens      INTEGER NOT NULL DEFAULT 0,
    draft_acc_tokens  INTEGER NOT NULL DEFAULT 0,
    input_tokens      INTEGER NOT NULL DEFAULT 0,
    output_tokens     INTEGER NOT NULL DEFAULT 0,
    prompt_per_second REAL    NOT NULL DEFAULT 0,
    tokens_per_second REAL    NOT NULL DEFAULT 0,
    duration_ms       INTEGER NOT NULL DEFAULT 0,
    received_ms       INTEGER,
    dispatched_ms     INTEGER,
    queue_wait_ms     INTEGER,
    swap_wait_ms      INTEGER,
    ttfb_ms           INTEGER,
    bytes_out         INTEGER NOT NULL DEFAULT 0,
    error_msg         TEXT    NOT NULL DEFAULT '',
    metadata_json     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX activity_by_time ON activity (ts_created DESC, id DESC);
CREATE INDEX activity_by_model ON activity (model_id, ts_created DESC, id DESC);

-- captures: request and response headers and bodies of recent requests (spec/api.md §15),
-- a CBOR document compressed with zstd. Not derived from the log (bodies never enter it), so a
-- rebuild keeps them; bounded by a byte budget (captureBuffer MiB, oldest evicted first) and an
-- age limit. Credentials are redacted before a capture is built.
CREATE TABLE captures (
    request_id TEXT    PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    data       BLOB    NOT NULL
);
CREATE INDEX captures_by_age ON captures (created_ms);
