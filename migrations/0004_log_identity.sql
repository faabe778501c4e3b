-- log_identity: one row naming this event log for good, made when the log is created (or when
-- an older log is upgraded). Seqs only mean something within one log, so a shared history
-- database keys a node's rows by (node, seq) and checks, through this id, that a node name is
-- always written by the same log: a second server given the same nodeName, or a node whose log
-- was replaced by a new one, is refused instead of being mixed into the old rows.
CREATE TABLE log_identity (
    id TEXT NOT NULL
);
INSERT INTO log_identity (id) VALUES (lower(hex(randomblob(16))));
