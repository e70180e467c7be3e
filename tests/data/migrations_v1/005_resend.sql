-- Resend DAG (mailtrace_resend): the send ledger that makes "one email per (incident, subject)" hold
-- across re-triggers, overlapping lists and tasks killed between the provider call and the record,
-- plus an audit row per run and the shared pacing slot that keeps every sender under the provider's
-- rate limit. Idempotent: safe to apply to a warehouse that already has these objects.

-- One row per email the resend DAG set out to send. The row is committed ('claimed') before the
-- provider is called, so a send can never happen without a trace; `reference` is passed to the
-- provider, so after a crash the provider can be asked whether the email went out.
CREATE TABLE IF NOT EXISTS mailtrace.resend_request (
    incident_id       text        NOT NULL,
    subject_type      text        NOT NULL,
    subject_id        text        NOT NULL,
    -- 0 for the first send; force_resend adds generation n+1 (a deliberate second email).
    generation        integer     NOT NULL DEFAULT 0 CHECK (generation >= 0),
    template          text        NOT NULL,
    language          text        NOT NULL,
    notification_type text        NOT NULL,
    recipient_email   text        NOT NULL,
    reference         text        NOT NULL UNIQUE,
    status            text        NOT NULL DEFAULT 'claimed'
                      CHECK (status IN ('claimed', 'sent', 'failed')),
    provider          text        NOT NULL DEFAULT 'gc_notify',
    provider_reference text,
    event_id          text,
    -- Provider calls started for this row; above 0 means an earlier call may have been accepted,
    -- so the reference is looked up before any new call.
    attempts          integer     NOT NULL DEFAULT 0,
    error             text,
    -- The run that currently owns the row (a later run takes over rows an earlier run left claimed).
    dag_run_id        text        NOT NULL,
    chunk_index       integer     NOT NULL,
    forced            boolean     NOT NULL DEFAULT false,
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    PRIMARY KEY (incident_id, subject_type, subject_id, generation)
);
CREATE INDEX IF NOT EXISTS resend_request_run_chunk_idx
    ON mailtrace.resend_request (dag_run_id, chunk_index) WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS resend_request_run_idx ON mailtrace.resend_request (dag_run_id);

-- One row per resend DAG run (dry runs included): who asked for what, and what came of it.
CREATE TABLE IF NOT EXISTS mailtrace.resend_run (
    dag_run_id   text PRIMARY KEY,
    incident_id  text        NOT NULL,
    params       jsonb       NOT NULL,
    dry_run      boolean     NOT NULL,
    outcome_uri  text,
    rows_read    integer     NOT NULL DEFAULT 0,
    planned      integer     NOT NULL DEFAULT 0,
    skipped      integer     NOT NULL DEFAULT 0,
    rejected     integer     NOT NULL DEFAULT 0,
    chunks       integer     NOT NULL DEFAULT 0,
    sent         integer,
    failed       integer,
    unresolved   integer,
    planned_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS resend_run_incident_idx ON mailtrace.resend_run (incident_id, planned_at);

-- The next free send slot per provider account. Every sender (parallel chunks, concurrent runs)
-- reserves its slot here, so together they never exceed the rate one run asked for.
CREATE TABLE IF NOT EXISTS mailtrace.send_pacer (
    name      text PRIMARY KEY,
    next_slot timestamptz NOT NULL DEFAULT now()
);
