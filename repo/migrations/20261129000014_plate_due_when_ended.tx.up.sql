-- Plate retention counts from when a session ended (DOMAIN.md "Privacy"). A
-- cancelled session ended when it was cancelled (settled_at), not at its
-- planned start, which its end_at holds and which may be max_plan_ahead_days
-- later; a stopped one at its end_at, settled then or a moment after (or a
-- second before, an early auto-stop). least() ignores a NULL, and only an open
-- session has no settled_at.
--
-- Retention reads this index, oldest ending first, each batch at the head of
-- it (rows leave it as their plate goes); sessions_plate_due, on end_at, is
-- read by nothing any more.
CREATE INDEX IF NOT EXISTS sessions_plate_due_ended ON sessions ((least(end_at, settled_at)), id)
    WHERE plate IS NOT NULL AND state <> 'open';
DROP INDEX IF EXISTS sessions_plate_due;
