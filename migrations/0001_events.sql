-- The append-only event log: every input event and every reducer decision, in commit order.
--
-- seq      assigned by the store inside the write transaction, contiguous, never reused
--          (AUTOINCREMENT keeps a deleted tail from being handed out again).
-- ts_ms    wall clock of the shell's clock provider, integer ms since the epoch.
-- type     the event or decision class name (llamaswap_es.events.types registry).
-- key      the model / request / timer id the event concerns (NULL when none); indexed.
-- boot     id of the server run that wrote the row (every open appends ServerStarted).
-- v        payload schema version; old payloads are upcast on read, never rewritten.
-- cause    for a decision, the seq of the input whose reduction produced it; NULL for inputs.
-- payload  compact JSON text with sorted keys, so json_extract() works in plain SQL.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    key     TEXT,
    boot    TEXT    NOT NULL,
    v       INTEGER NOT NULL DEFAULT 1,
    cause   INTEGER,
    payload TEXT    NOT NULL
);

-- "every RequestFinished since seq N", "the last ServerStarted"
CREATE INDEX events_by_type ON events (type, seq);

-- "the history of request r-17 / model llama-8b"; inputs without a key are not indexed.
CREATE INDEX events_by_key ON events (key, seq) WHERE key IS NOT NULL;
