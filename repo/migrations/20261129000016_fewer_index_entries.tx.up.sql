-- Issue 16: index entries that every write paid for and no read needs.
--
-- outbox_by_age indexed outbox (id), which the primary key already does: the
-- relay reads the primary key, and every outbox row was inserted into both.
DROP INDEX IF EXISTS outbox_by_age;

-- The unique constraint on events.sequence indexed every event twice: once at
-- its insert, with a NULL sequence, and again when the sequencer numbered it.
-- A unique index of the numbered only is the same rule (NULLs were never
-- compared), and every read of it (max(sequence), sequence > $after) implies
-- sequence IS NOT NULL, so the planner still uses it.
CREATE UNIQUE INDEX IF NOT EXISTS events_sequence ON events (sequence) WHERE sequence IS NOT NULL;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_sequence_key;
