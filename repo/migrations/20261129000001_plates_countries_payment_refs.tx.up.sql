-- Issue 10, fault 8: plates of up to 12 letters and digits with their country.
-- Every statement can run twice (see the init migration), and no row is lost.

-- Plates: 1-12 of A-Z0-9 (Irish plates reach 11). The index sessions_rights and
-- the exclusion constraint sessions_plate_not_parked_twice take the column as it
-- is (text); the exclusion stays on (zone, plate) without the country: one plate
-- has one session per zone at a time, whatever its country.
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_plate_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_plate_check CHECK (plate ~ '^[A-Z0-9]{1,12}$');

-- The plate's country (ISO 3166-1 alpha-2); every session so far was Dutch.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS country text NOT NULL DEFAULT 'NL';
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_country_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_country_check CHECK (country ~ '^[A-Z]{2}$');

-- Recorded outcomes show a session as the API does, now with its country.
UPDATE requests SET result = result || '{"country": "NL"}'::jsonb
WHERE type IN ('session:start', 'session:stop') AND jsonb_typeof(result) = 'object'
  AND result->'plate' IS NOT NULL AND result->'country' IS NULL;
