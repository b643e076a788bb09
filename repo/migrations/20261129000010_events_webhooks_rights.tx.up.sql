-- Telling others (DOMAIN.md "Telling others"): events, webhooks and their
-- deliveries, and each session's right in the national register.

-- Every change of a session or permit, written in the transaction of the change.
-- pk is the order rows were inserted in (internal); sequence is the number
-- consumers see, given by the sequencer (repo.SequenceEvents) to committed rows
-- only, one pass at a time: a row that commits later can never get a smaller
-- sequence than one a consumer has already read.
CREATE TABLE events (
    pk          bigserial   PRIMARY KEY,
    id          uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    sequence    bigint      UNIQUE,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    permit_id   bigint,
    session_id  bigint,
    request_id  text,
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_unsequenced ON events (pk) WHERE sequence IS NULL;
CREATE INDEX events_session ON events (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX events_type_sequence ON events (type, sequence) WHERE sequence IS NOT NULL;
-- One session.ending per session and planned end, however often its task runs.
CREATE UNIQUE INDEX events_ending_once ON events (session_id, (data->>'planned_end_at'))
    WHERE type = 'session.ending';

-- Subscriptions, managed by operators (PUT /v1/admin/webhooks/{name}).
CREATE TABLE webhooks (
    name       text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    url        text        NOT NULL,
    secret     text        NOT NULL,
    types      text[],     -- NULL: every type
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per event and webhook it is owed to, written by the sequencer with
-- the event:deliver task's outbox row. No plate: the body is the event.
CREATE TABLE webhook_deliveries (
    webhook      text        NOT NULL,
    event_id     uuid        NOT NULL REFERENCES events (id),
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts     int         NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    PRIMARY KEY (webhook, event_id)
);
CREATE INDEX webhook_deliveries_undelivered ON webhook_deliveries (webhook, created_at)
    WHERE status IN ('pending', 'failed');

-- A session's right in the national register (CONTRACT.md "The registrar").
-- registration holds the zone's register codes as they were when the session
-- started (NULL: the session is not registered). right_version grows with every
-- change of the session; the registrar has acknowledged right_registered_version
-- and refused right_rejected_version.
ALTER TABLE sessions
    ADD COLUMN registration             jsonb,
    ADD COLUMN right_version            int NOT NULL DEFAULT 0,
    ADD COLUMN right_changed_at         timestamptz,
    ADD COLUMN right_registered_version int NOT NULL DEFAULT 0,
    ADD COLUMN right_registered_at      timestamptz,
    ADD COLUMN right_rejected_version   int NOT NULL DEFAULT 0,
    ADD COLUMN right_rejection          text;
CREATE INDEX sessions_right_pending ON sessions (right_changed_at)
    WHERE right_version > right_registered_version AND right_version > right_rejected_version;
