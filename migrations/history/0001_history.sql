-- The history database: what every node of a fleet did, written by each node's history sink
-- (llamaswap_es/projections/history). One SQL text for SQLite and PostgreSQL alike: only types
-- and statements both accept (BIGINT, INTEGER, TEXT, DOUBLE PRECISION; no SERIAL, no
-- AUTOINCREMENT). Each file runs in one transaction (PostgreSQL's DDL is transactional too);
-- statements end with a semicolon at the end of a line.
--
-- history_checkpoints: one row per node. `seq` is the last seq of the node's event log whose
-- rows are in this database; `state` the small JSON state the sink continues from (requests
-- received and not yet finished, models loading). Written in the same transaction as the rows,
-- and only if `seq` is still what the writer read: so rows are written exactly once, and a
-- commit whose answer was lost (the connection dropped) is found out by reading `seq` again.
-- `log_id` is the node's event log (its `log_identity`): a node name is always written by one
-- log, never by two.
CREATE TABLE history_checkpoints (
    node       TEXT   NOT NULL PRIMARY KEY,
    log_id     TEXT   NOT NULL,
    seq        BIGINT NOT NULL DEFAULT 0,
    state      TEXT   NOT NULL DEFAULT '{}',
    updated_ms BIGINT NOT NULL DEFAULT 0
);

-- history_requests: one row per finished request of every node, keyed by (node, request_id):
-- the local `activity` table's columns (docs/sql.md) plus
--   node         the node that recorded it (llamaswap-es.nodeName)
--   peer         the peer id when this node forwarded the request to a peer ('' when it served
--                it itself): a request that a front node forwards to another node of the fleet
--                is recorded by both, so count answered requests with peer = ''
--   day          the UTC date of ts_ms, 'YYYY-MM-DD' (per-day queries without date functions,
--                which SQLite and PostgreSQL spell differently)
--   recorded_ms  when the sink wrote the row (recorded_ms - ts_ms is how far behind it was)
CREATE TABLE history_requests (
    node              TEXT             NOT NULL,
    request_id        TEXT             NOT NULL,
    seq               BIGINT           NOT NULL,
    day               TEXT             NOT NULL,
    ts_ms             BIGINT           NOT NULL,
    model_id          TEXT             NOT NULL,
    requested_model   TEXT             NOT NULL DEFAULT '',
    peer              TEXT             NOT NULL DEFAULT '',
    req_path          TEXT             NOT NULL DEFAULT '',
    method            TEXT             NOT NULL DEFAULT '',
    stream            INTEGER          NOT NULL DEFAULT 0,
    resp_content_type TEXT             NOT NULL DEFAULT '',
    resp_status_code  INTEGER          NOT NULL DEFAULT 0,
    cache_tokens      INTEGER          NOT NULL DEFAULT 0,
    draft_tokens      INTEGER          NOT NULL DEFAULT 0,
    draft_acc_tokens  INTEGER          NOT NULL DEFAULT 0,
    input_tokens      INTEGER          NOT NULL DEFAULT 0,
    output_tokens     INTEGER          NOT NULL DEFAULT 0,
    prompt_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    duration_ms       BIGINT           NOT NULL DEFAULT 0,
    received_ms       BIGINT,
    dispatched_ms     BIGINT,
    queue_wait_ms     BIGINT,
    swap_wait_ms      BIGINT,
    ttfb_ms           BIGINT,
    bytes_out         BIGINT           NOT NULL DEFAULT 0,
    error_msg         TEXT             NOT NULL DEFAULT '',
    metadata_json     TEXT             NOT NULL DEFAULT '',
    recorded_ms       BIGINT           NOT NULL,
    PRIMARY KEY (node, request_id)
);
CREATE INDEX history_requests_by_time ON history_requests (ts_ms);
CREATE INDEX history_requests_by_day ON history_requests (day, node, model_id);
CREATE INDEX history_requests_by_node ON history_requests (node, ts_ms);

-- history_decisions: what each node's scheduler and processes did, keyed by (node, seq) (the
-- seq of the event in the node's log). kind is one of
--   swap          a swap was planned for `model`: detail lists the models evicted for it
--   load          the scheduler started `model` (reason: why, e.g. the request or a preload)
--   ready         the model answered its health check: duration_ms since its load began
--   start_failed  the model did not start (detail: the error)
--   stop          the scheduler stopped the model (reason: evict, unload, ttl, reload,
--                 shutdown, hung …)
--   stopped       the stop finished (detail: "forced" when it had to be killed)
--   crash         a ready model exited on its own (detail: exit code or signal)
CREATE TABLE history_decisions (
    node        TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    day         TEXT    NOT NULL,
    ts_ms       BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    model_id    TEXT    NOT NULL,
    instance    INTEGER NOT NULL DEFAULT 0,
    reason      TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT '',
    duration_ms BIGINT,
    recorded_ms BIGINT  NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX history_decisions_by_time ON history_decisions (ts_ms);
CREATE INDEX history_decisions_by_model ON history_decisions (model_id, kind, ts_ms);
