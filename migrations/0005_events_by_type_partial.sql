-- events_by_type indexes only the types a request does not write: the per-request rows
-- (received, dispatched, queue positions, finished) were 40 % of the log's index bytes, and no
-- query looks them up by type alone (they are found by key, or by seq range from a snapshot).
-- A query for other types uses this index when it repeats the WHERE below word for word
-- (SQLite's rule for partial indexes); llamaswap_es/events/reader.py does.
DROP INDEX events_by_type;
CREATE INDEX events_by_type ON events (type, seq)
    WHERE type NOT IN ('Dispatch', 'PeerRequestFinished', 'QueuePositions', 'RequestFinished', 'RequestReceived');
