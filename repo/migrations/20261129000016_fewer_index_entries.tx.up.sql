-- Issue 16: an index entry that every write paid for and no read needs.
-- outbox_by_age indexed outbox (id), which the primary key already does: the
-- relay reads the primary key, and every outbox row was inserted into both.
-- The outbox holds only what is waiting to be handed to Redis, so the lock
-- this takes is over at once.
DROP INDEX IF EXISTS outbox_by_age;
