-- parkd's schema. Postgres is the source of truth: every invariant the database can
-- carry is a constraint here, so no code path can break it, however it is written.
-- Every statement is IF NOT EXISTS: bun marks a migration applied after its
-- transaction commits, so a process killed in between re-runs it harmlessly.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS zones (
    code                        text PRIMARY KEY CHECK (code ~ '^[A-Z0-9_]{1,32}$'),
    name                        text NOT NULL,
    time_zone                   text NOT NULL,
    tariff_cents_per_hour       bigint NOT NULL CHECK (tariff_cents_per_hour > 0),
    paid_hours                  jsonb NOT NULL,
    invalid_weekdays            jsonb NOT NULL DEFAULT '[]',
    max_session_minutes         integer NOT NULL CHECK (max_session_minutes > 0),
    max_plan_ahead_days         integer NOT NULL CHECK (max_plan_ahead_days > 0),
    annual_purchase_limit_hours integer NOT NULL CHECK (annual_purchase_limit_hours > 0),
    annual_usage_limit_hours    integer NOT NULL CHECK (annual_usage_limit_hours > 0),
    year_starts                 text NOT NULL CHECK (year_starts ~ '^[0-1][0-9]-[0-3][0-9]$'),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- An address outside every permit zone has zone NULL: it exists in the register,
-- but no visitor permit can be issued for it (address_not_in_zone).
CREATE TABLE IF NOT EXISTS addresses (
    id           text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    zone         text REFERENCES zones (code),
    postcode     text,
    house_number text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The population register (BRP) extract: who is registered where.
CREATE TABLE IF NOT EXISTS registrations (
    resident_id   text NOT NULL CHECK (length(resident_id) BETWEEN 1 AND 64),
    address_id    text NOT NULL REFERENCES addresses (id),
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, address_id)
);

-- A permit carries its current permit year's counters on its own row: the row is
-- locked by every change anyway, and the nightly rollover becomes one set-based
-- UPDATE. Closed years move to permit_years.
CREATE TABLE IF NOT EXISTS permits (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id       text NOT NULL,
    address_id        text NOT NULL REFERENCES addresses (id),
    zone              text NOT NULL REFERENCES zones (code),
    status            text NOT NULL CHECK (status IN ('active', 'ended')),
    balance_minutes   integer NOT NULL DEFAULT 0 CHECK (balance_minutes >= 0),
    reserved_minutes  integer NOT NULL DEFAULT 0 CHECK (reserved_minutes >= 0),
    year_starts_at    timestamptz NOT NULL,
    year_ends_at      timestamptz NOT NULL,
    purchased_minutes integer NOT NULL DEFAULT 0 CHECK (purchased_minutes >= 0),
    used_minutes      integer NOT NULL DEFAULT 0 CHECK (used_minutes >= 0),
    issued_at         timestamptz NOT NULL,
    ended_at          timestamptz,
    end_reason        text,
    request_id        text,
    CHECK (year_starts_at < year_ends_at),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL))
);
-- At most one active digital visitor permit per address.
CREATE UNIQUE INDEX IF NOT EXISTS permits_one_active_per_address ON permits (address_id) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS permits_year_ends_at ON permits (year_ends_at) WHERE status = 'active';

-- Closed permit years: the annual statements.
CREATE TABLE IF NOT EXISTS permit_years (
    permit_id            bigint NOT NULL REFERENCES permits (id),
    year_starts_at       timestamptz NOT NULL,
    year_ends_at         timestamptz NOT NULL,
    purchased_minutes    integer NOT NULL,
    used_minutes         integer NOT NULL,
    carried_over_minutes integer NOT NULL,
    closed_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (permit_id, year_starts_at)
);

-- state stores only open/stopped/cancelled: planned versus active follows from the
-- clock (start_at), so nothing has to flip it and no reader sees it stale.
CREATE TABLE IF NOT EXISTS sessions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    permit_id        bigint NOT NULL REFERENCES permits (id),
    zone             text NOT NULL REFERENCES zones (code),
    plate            text NOT NULL CHECK (plate ~ '^[A-Z0-9]{1,8}$'),
    state            text NOT NULL CHECK (state IN ('open', 'stopped', 'cancelled')),
    start_at         timestamptz NOT NULL,
    planned_end_at   timestamptz NOT NULL,
    end_at           timestamptz,
    reserved_minutes integer NOT NULL CHECK (reserved_minutes >= 0),
    charged_minutes  integer CHECK (charged_minutes >= 0),
    notices          jsonb NOT NULL DEFAULT '[]',
    request_id       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    settled_at       timestamptz,
    CHECK (planned_end_at > start_at),
    -- settled exactly when it has an end and a charge; never charged past its planned end
    CHECK ((state = 'open') = (end_at IS NULL)),
    CHECK ((state = 'open') = (charged_minutes IS NULL)),
    CHECK ((state = 'open') = (settled_at IS NULL)),
    CHECK (end_at IS NULL OR (end_at >= start_at AND end_at <= planned_end_at)),
    CHECK (charged_minutes IS NULL OR charged_minutes <= reserved_minutes),
    -- one plate, one open session at a time per zone, whichever permit it is on
    CONSTRAINT sessions_plate_not_parked_twice
        EXCLUDE USING gist (zone WITH =, plate WITH =, tstzrange(start_at, planned_end_at) WITH &&)
        WHERE (state = 'open')
);
CREATE INDEX IF NOT EXISTS sessions_open_by_end ON sessions (planned_end_at) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS sessions_permit ON sessions (permit_id, start_at DESC);
-- enforcement: one index lookup for (plate, zone) near an instant
CREATE INDEX IF NOT EXISTS sessions_rights ON sessions (plate, zone, start_at DESC) WHERE state <> 'cancelled';

-- Every change of a permit's balance. The balance always equals the sum of minutes.
CREATE TABLE IF NOT EXISTS ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    permit_id   bigint NOT NULL REFERENCES permits (id),
    kind        text NOT NULL CHECK (kind IN ('topup', 'reserve', 'release', 'charge', 'expire')),
    minutes     integer NOT NULL,
    cents       bigint CHECK (cents >= 0),
    session_id  bigint REFERENCES sessions (id),
    request_id  text,
    payment_ref text,
    at          timestamptz NOT NULL,
    CHECK (CASE WHEN kind IN ('topup', 'release') THEN minutes >= 0 ELSE minutes <= 0 END),
    CHECK (kind <> 'topup' OR (cents IS NOT NULL AND payment_ref IS NOT NULL)),
    CHECK (kind NOT IN ('reserve', 'release', 'charge') OR session_id IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS ledger_by_permit ON ledger (permit_id, id DESC);
-- one reservation and one settlement (charge) per session, whatever is retried
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_reserve_per_session ON ledger (session_id) WHERE kind = 'reserve';
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_charge_per_session ON ledger (session_id) WHERE kind = 'charge';
-- the same payment reference twice is one top-up
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_topup_per_payment ON ledger (permit_id, payment_ref) WHERE kind = 'topup';
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_expiry_per_permit ON ledger (permit_id) WHERE kind = 'expire';

-- The outcome of every request, keyed by the caller's request ID: a request ID is
-- applied once, and its outcome answers every repeat.
CREATE TABLE IF NOT EXISTS requests (
    request_id text PRIMARY KEY CHECK (request_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    type       text NOT NULL,
    body_hash  text NOT NULL,
    status     text NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
    subject    text,
    error      jsonb,
    result     jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'rejected') = (error IS NOT NULL))
);

-- Tasks to hand to Redis once the transaction that decided them has committed
-- (the transactional outbox): a crash between commit and enqueue loses nothing.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_type  text NOT NULL,
    task_id    text NOT NULL,
    queue      text NOT NULL,
    payload    jsonb NOT NULL,
    process_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_by_age ON outbox (id);
