-- Back to one reserve entry per session: refused (the index cannot be built)
-- while a changed session has more than one.
DROP INDEX IF EXISTS ledger_one_reserve_per_session_request;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_reserve_per_session ON ledger (session_id) WHERE kind = 'reserve';
