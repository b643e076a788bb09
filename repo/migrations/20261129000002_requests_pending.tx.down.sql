DROP INDEX IF EXISTS requests_pending;
