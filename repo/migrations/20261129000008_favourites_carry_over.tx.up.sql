-- Favourites (DOMAIN.md "Favourites"): named plates of a permit, at most 25
-- (decided under the permit's lock), deleted when the permit ends. The plate is
-- stored normalised, so "ab-12-cd" and "AB 12 CD" are one row.
CREATE TABLE IF NOT EXISTS favourites (
    permit_id  bigint NOT NULL REFERENCES permits (id),
    plate      text NOT NULL CHECK (plate ~ '^[A-Z0-9]{1,12}$'),
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 40),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (permit_id, plate)
);

-- The carry-over cap (DOMAIN.md "Carry-over cap"): the closed year's statement
-- shows what the cap expired. Years closed before had no cap: 0.
ALTER TABLE permit_years ADD COLUMN IF NOT EXISTS expired_minutes integer NOT NULL DEFAULT 0
    CHECK (expired_minutes >= 0);

-- A permit now has an expire entry per year the cap cut (naming that year) and,
-- as before, one when it ends (naming none). Each stays unique, so that neither
-- can be written twice whatever runs twice.
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS year_starts_at timestamptz;
ALTER TABLE ledger DROP CONSTRAINT IF EXISTS ledger_year_only_on_expiry;
ALTER TABLE ledger ADD CONSTRAINT ledger_year_only_on_expiry CHECK (year_starts_at IS NULL OR kind = 'expire');
DROP INDEX IF EXISTS ledger_one_expiry_per_permit;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_end_expiry_per_permit ON ledger (permit_id)
    WHERE kind = 'expire' AND year_starts_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_expiry_per_permit_year ON ledger (permit_id, year_starts_at)
    WHERE kind = 'expire' AND year_starts_at IS NOT NULL;
