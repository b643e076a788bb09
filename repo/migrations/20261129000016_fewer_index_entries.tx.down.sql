ALTER TABLE events ADD CONSTRAINT events_sequence_key UNIQUE (sequence);
DROP INDEX IF EXISTS events_sequence;
CREATE INDEX IF NOT EXISTS outbox_by_age ON outbox (id);
