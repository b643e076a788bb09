-- Plate retention (DOMAIN.md "Privacy"): a session's plate is erased (NULL, not
-- hashed) once the session ended longer than the retention ago. Only an ended
-- session may lose it: an open one is still enforced by its plate. The CHECK
-- sessions_plate_check passes NULL, and the exclusion constraint
-- sessions_plate_not_parked_twice looks at open sessions only, so neither meets
-- an erased plate.
ALTER TABLE sessions ALTER COLUMN plate DROP NOT NULL;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_plate_erased_only_when_ended;
ALTER TABLE sessions ADD CONSTRAINT sessions_plate_erased_only_when_ended
    CHECK (plate IS NOT NULL OR state <> 'open');

-- What retention still has to erase, oldest end first: rows leave the index as
-- their plate goes, so each batch reads the head of it and no keyset is kept.
CREATE INDEX IF NOT EXISTS sessions_plate_due ON sessions (end_at, id)
    WHERE plate IS NOT NULL AND state <> 'open';

-- Recorded outcomes that show a session with its plate (start, stop, change,
-- auto-stop), by session ID: retention rewrites them to plate null.
CREATE INDEX IF NOT EXISTS requests_session_plate ON requests ((result->>'id'))
    WHERE jsonb_typeof(result->'plate') = 'string';

-- Refused starts and plate corrections keep no session, but their request hash
-- is one of a fingerprint naming the plate: retention overwrites it once the
-- refusal is older than the retention.
CREATE INDEX IF NOT EXISTS requests_refused_plate_hash ON requests (updated_at)
    WHERE status = 'rejected' AND type IN ('session:start', 'session:change') AND body_hash <> 'erased';
