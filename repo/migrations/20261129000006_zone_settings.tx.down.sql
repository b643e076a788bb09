ALTER TABLE zones
    DROP COLUMN IF EXISTS registration,
    DROP COLUMN IF EXISTS ending_notice_minutes,
    DROP COLUMN IF EXISTS carry_over_max_hours,
    DROP COLUMN IF EXISTS default_end,
    DROP COLUMN IF EXISTS max_concurrent_sessions;
