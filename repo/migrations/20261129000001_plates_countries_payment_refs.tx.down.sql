-- Back to plates of 1-8 without a country and payment references per permit.
-- Rows written since are kept: the narrower plate CHECK is NOT VALID (it holds
-- for new rows, old plates of 9-12 stay readable).
DROP INDEX IF EXISTS ledger_payment_ref_used_once;
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_duplicate_topups_are_old;
ALTER TABLE ledger DROP COLUMN IF EXISTS duplicate_of_topup;
UPDATE requests SET result = result - 'country'
WHERE type IN ('session:start', 'session:stop') AND jsonb_typeof(result) = 'object';
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_country_check;
ALTER TABLE sessions DROP COLUMN IF EXISTS country;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_plate_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_plate_check CHECK (plate ~ '^[A-Z0-9]{1,8}$') NOT VALID;
