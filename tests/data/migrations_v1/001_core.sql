-- Core warehouse schema: the contract tables (CONTRACT.md §1-2) and the pipeline's own tables.
-- Written to be safe on a warehouse where the application already created its tables: every
-- statement is IF NOT EXISTS, so mailtrace only adds what is missing.

CREATE SCHEMA IF NOT EXISTS mailtrace;

-- Written by the application (the event log).
CREATE TABLE IF NOT EXISTS mailtrace.notification_event (
    event_id          text PRIMARY KEY,
    subject_type      text        NOT NULL,
    subject_id        text        NOT NULL,
    notification_type text        NOT NULL,
    recipient_email   text        NOT NULL,
    provider          text        NOT NULL,
    provider_reference text,
    client_reference  text,
    sent_at           timestamptz NOT NULL,
    local_status      text        NOT NULL
);

-- Owned by mailtrace: the provider's verdict, kept current by reconcile.
ALTER TABLE mailtrace.notification_event
    ADD COLUMN IF NOT EXISTS delivery_status     text,
    ADD COLUMN IF NOT EXISTS failure_reason      text,
    ADD COLUMN IF NOT EXISTS delivery_detail     text,
    ADD COLUMN IF NOT EXISTS delivery_updated_at timestamptz;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'notification_event_delivery_status_check') THEN
        ALTER TABLE mailtrace.notification_event ADD CONSTRAINT notification_event_delivery_status_check
            CHECK (delivery_status IN ('pending', 'delivered', 'permanent_failure', 'temporary_failure',
                                       'technical_failure', 'complaint', 'not_at_provider', 'send_failed'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'notification_event_failure_reason_check') THEN
        ALTER TABLE mailtrace.notification_event ADD CONSTRAINT notification_event_failure_reason_check
            CHECK (failure_reason IN ('invalid_address', 'suppressed', 'mailbox_full', 'content_rejected',
                                      'no_receipt', 'provider_error', 'unknown'));
    END IF;
END $$;

CREATE INDEX IF NOT EXISTS notification_event_provider_reference_idx
    ON mailtrace.notification_event (provider, provider_reference);
CREATE INDEX IF NOT EXISTS notification_event_client_reference_idx
    ON mailtrace.notification_event (provider, client_reference) WHERE provider_reference IS NULL;
CREATE INDEX IF NOT EXISTS notification_event_sent_at_idx
    ON mailtrace.notification_event (sent_at);
CREATE INDEX IF NOT EXISTS notification_event_subject_idx
    ON mailtrace.notification_event (subject_type, subject_id);
-- Reconcile revisits only events without a final verdict; this keeps that set cheap to find
-- however long the history grows.
CREATE INDEX IF NOT EXISTS notification_event_open_idx
    ON mailtrace.notification_event (sent_at)
    WHERE delivery_status IS NULL OR delivery_status = 'pending';

CREATE TABLE IF NOT EXISTS mailtrace.contact (
    subject_type text        NOT NULL,
    subject_id   text        NOT NULL,
    email        text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_type, subject_id)
);

-- Append-only history of every status a provider reported. One row per distinct observation:
-- re-reading the same status (overlapping windows, re-runs, SQS redelivery) adds nothing.
CREATE TABLE IF NOT EXISTS mailtrace.provider_event (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider           text        NOT NULL,
    provider_reference text        NOT NULL,
    -- Lower-cased recipient; one SES message can carry several recipients, each with its own fate.
    recipient_email    text        NOT NULL DEFAULT '',
    client_reference   text,
    raw_status         text        NOT NULL,
    -- Normalised status (CONTRACT.md §2); NULL when raw_status is not one we recognise, so an
    -- unknown value is kept and reported rather than guessed.
    delivery_status    text,
    failure_reason     text,
    detail             text,
    event_at           timestamptz NOT NULL,
    observed_at        timestamptz NOT NULL DEFAULT now(),
    source             text        NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS provider_event_observation_key
    ON mailtrace.provider_event (provider, provider_reference, recipient_email, raw_status, event_at);
CREATE INDEX IF NOT EXISTS provider_event_client_reference_idx
    ON mailtrace.provider_event (provider, client_reference) WHERE client_reference IS NOT NULL;

-- Provider notifications that match no event in the log (sent by something else, or an app row
-- that never committed). Removed again once a matching event appears.
CREATE TABLE IF NOT EXISTS mailtrace.orphan_notification (
    provider           text        NOT NULL,
    provider_reference text        NOT NULL,
    recipient_email    text        NOT NULL DEFAULT '',
    client_reference   text,
    last_status        text,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_reference, recipient_email)
);

-- Direct look-ups of events the list window no longer covers. A miss (the provider answered
-- "no such notification") is the evidence behind a not_at_provider verdict.
CREATE TABLE IF NOT EXISTS mailtrace.provider_lookup (
    event_id        text PRIMARY KEY REFERENCES mailtrace.notification_event (event_id) ON DELETE CASCADE,
    last_checked_at timestamptz NOT NULL,
    found           boolean     NOT NULL,
    checks          integer     NOT NULL DEFAULT 1
);

-- Watermarks and cursors (extract high-water marks, reconcile cursor).
CREATE TABLE IF NOT EXISTS mailtrace.pipeline_state (
    name       text PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
