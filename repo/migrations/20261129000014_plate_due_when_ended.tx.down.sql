CREATE INDEX IF NOT EXISTS sessions_plate_due ON sessions (end_at, id)
    WHERE plate IS NOT NULL AND state <> 'open';
DROP INDEX IF EXISTS sessions_plate_due_ended;
