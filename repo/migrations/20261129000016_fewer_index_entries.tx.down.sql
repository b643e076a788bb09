CREATE INDEX IF NOT EXISTS outbox_by_age ON outbox (id);
