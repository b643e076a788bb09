-- Issue 10, faults 2 and 8: plates of up to 12 letters and digits with their
-- country, and a payment reference used once in the whole system. Every
-- statement can run twice (see the init migration), and no row is lost.

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

-- A payment reference pays one top-up, of one permit, in the whole system. Before
-- this, the same reference could be booked on several permits; those top-ups stay
-- in the ledger (money that was credited stays credited) and each later one names
-- the first top-up of its reference in duplicate_of_topup. Only such earlier rows
-- may: the CHECK, written with the highest ledger ID at the time of this
-- migration, keeps every later top-up under the unique index.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS duplicate_of_topup bigint REFERENCES ledger (id);
UPDATE ledger l SET duplicate_of_topup = f.id
FROM (SELECT DISTINCT ON (payment_ref) payment_ref, id FROM ledger WHERE kind = 'topup' ORDER BY payment_ref, id) f
WHERE l.kind = 'topup' AND l.payment_ref = f.payment_ref AND l.id <> f.id AND l.duplicate_of_topup IS NULL;
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_duplicate_topups_are_old;
DO $$
BEGIN
    EXECUTE format('ALTER TABLE ledger ADD CONSTRAINT ledger_duplicate_topups_are_old'
        ' CHECK (duplicate_of_topup IS NULL OR (kind = %L AND id <= %s))',
        'topup', (SELECT coalesce(max(id), 0) FROM ledger));
END
$$;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_payment_ref_used_once ON ledger (payment_ref)
    WHERE kind = 'topup' AND duplicate_of_topup IS NULL;
-- ledger_one_topup_per_payment (permit_id, payment_ref) stays: it still holds, for
-- the old top-ups too, and it finds a reference on one permit.
