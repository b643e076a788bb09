-- Back to plates of 1-8 without a country.
-- Rows written since are kept: the narrower plate CHECK is NOT VALID (it holds
-- for new rows, old plates of 9-12 stay readable).
UPDATE requests SET result = result - 'country'
WHERE type IN ('session:start', 'session:stop') AND jsonb_typeof(result) = 'object';
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_country_check;
ALTER TABLE sessions DROP COLUMN IF EXISTS country;
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_plate_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_plate_check CHECK (plate ~ '^[A-Z0-9]{1,8}$') NOT VALID;
