-- Fails, as it should, once a permit has more than one expire entry (a capped
-- year and its end): the ledger is a financial record and is not rewritten.
DROP INDEX IF EXISTS ledger_one_expiry_per_permit_year;
DROP INDEX IF EXISTS ledger_one_end_expiry_per_permit;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_expiry_per_permit ON ledger (permit_id) WHERE kind = 'expire';
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_year_only_on_expiry;
ALTER TABLE ledger DROP COLUMN IF EXISTS year_starts_at;
ALTER TABLE permit_years DROP COLUMN IF EXISTS expired_minutes;
DROP TABLE IF EXISTS favourites;
