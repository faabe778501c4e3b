-- activity.peer: the peer that served a request this node forwarded ('' when it served it
-- itself), so that the local history's request rows can be the activity table itself (a view,
-- llamaswap_es/projections/history/local_view.py) instead of a second copy of every request in
-- this file. Rows from before hold '' until the history sink's first start on this version
-- copies the peer of its own rows over (then drops its copy).
ALTER TABLE activity ADD COLUMN peer TEXT NOT NULL DEFAULT '';
-- The local history view reads activity by `ts_ms` (the fleet Activity page sorts and filters on
-- it): this index stands in for the copy's history_requests_by_time.
CREATE INDEX activity_by_ts_ms ON activity (ts_ms);
