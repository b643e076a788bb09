DROP INDEX IF EXISTS sessions_right_pending;
ALTER TABLE sessions
    DROP COLUMN IF EXISTS registration,
    DROP COLUMN IF EXISTS right_version,
    DROP COLUMN IF EXISTS right_changed_at,
    DROP COLUMN IF EXISTS right_registered_version,
    DROP COLUMN IF EXISTS right_registered_at,
    DROP COLUMN IF EXISTS right_rejected_version,
    DROP COLUMN IF EXISTS right_rejection;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhooks;
DROP TABLE IF EXISTS events;
