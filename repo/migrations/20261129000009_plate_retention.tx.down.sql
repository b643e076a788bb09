-- Erased plates cannot come back: NOT NULL is restored only if none was erased
-- (else this fails and the operator decides).
DROP INDEX IF EXISTS requests_refused_plate_hash;
DROP INDEX IF EXISTS requests_session_plate;
DROP INDEX IF EXISTS sessions_plate_due;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_plate_erased_only_when_ended;
ALTER TABLE sessions ALTER COLUMN plate SET NOT NULL;
