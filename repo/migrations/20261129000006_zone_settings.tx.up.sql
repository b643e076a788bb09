-- The zone settings of DOMAIN.md "What residents can do besides start and stop"
-- and "Telling others". Existing zones get the defaults, which keep the
-- behaviour they had: no cap on visitors at once, a start without an end runs
-- the maximum duration, the whole balance carries over, the ending notice 10
-- minutes before the end, rights not registered.
ALTER TABLE zones
    ADD COLUMN IF NOT EXISTS max_concurrent_sessions integer CHECK (max_concurrent_sessions > 0),
    ADD COLUMN IF NOT EXISTS default_end text NOT NULL DEFAULT 'max_duration'
        CHECK (default_end IN ('max_duration', 'paid_regime_end')),
    ADD COLUMN IF NOT EXISTS carry_over_max_hours integer CHECK (carry_over_max_hours >= 0),
    ADD COLUMN IF NOT EXISTS ending_notice_minutes integer NOT NULL DEFAULT 10 CHECK (ending_notice_minutes > 0),
    ADD COLUMN IF NOT EXISTS registration jsonb;
