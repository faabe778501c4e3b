-- event_packs: request events that every reader has passed, moved out of `events` in blocks and
-- compressed (llamaswap_es/events/pack.py, docs/architecture.md "Packed request events"). The
-- log is still `events` plus these rows, in seq order; the readers merge both, so a packed row
-- reads back as the identical row. Process, swap and config events are never packed.
--
-- first_seq, last_seq      the lowest and highest seq in the pack (packs never overlap, and
--                          every packable row at or below a pack's last_seq is in a pack).
-- first_ts_ms, last_ts_ms  the lowest and highest ts_ms of its rows.
-- count                    how many rows it holds.
-- types                    its rows' distinct types, comma-separated (a read by type skips it).
-- min_key, max_key         the lowest and highest `key` in it (request ids are time-ordered, so
--                          a read by key opens only the packs whose range holds the key).
-- codec                    how `keys` and `data` are encoded ('zstd-cols-1').
-- keys                     its sorted distinct keys, compressed (checked before `data` is opened).
-- data                     the rows, column by column, compressed.
CREATE TABLE event_packs (
    first_seq   INTEGER PRIMARY KEY,
    last_seq    INTEGER NOT NULL,
    first_ts_ms INTEGER NOT NULL,
    last_ts_ms  INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    types       TEXT    NOT NULL,
    min_key     TEXT,
    max_key     TEXT,
    codec       TEXT    NOT NULL,
    keys        BLOB    NOT NULL,
    data        BLOB    NOT NULL
);
