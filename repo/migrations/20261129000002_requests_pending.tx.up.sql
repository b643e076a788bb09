-- Requests still pending, oldest first: `parkd check` and the metric
-- parkd_requests_pending_oldest_age_seconds look for the ones stuck there, in a
-- table that otherwise keeps every request ever made.
CREATE INDEX IF NOT EXISTS requests_pending ON requests (created_at) WHERE status = 'pending';
