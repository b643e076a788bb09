-- A change of a session (session:change) that extends it reserves the extra
-- minutes with a reserve entry of its own, so a session may now have several
-- reserve entries: the start's and one per extending change. What stays
-- unique is one reserve entry per session and request: a request (start or
-- change) reserves at most once, whatever is retried. The invariant `parkd
-- check` holds instead: an open session's reserved_minutes is minus the sum of
-- its reserve and release entries; a settled one's entries net to minus its
-- charge (the settlement releases whatever is still reserved).
DROP INDEX IF EXISTS ledger_one_reserve_per_session;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_reserve_per_session_request
    ON ledger (session_id, request_id) WHERE kind = 'reserve';
