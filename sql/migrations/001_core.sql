-- Core warehouse schema: the pipeline's own tables, and the application's two input relations
-- (CONTRACT.md §1) only where they do not exist yet.
-- Rewritten for contract version 2 (mailtrace reads the application's data and never writes, alters or
-- indexes it): a warehouse that applied the version-1 text of this file is brought to the same layout by
-- 013_contract_v2.sql.

CREATE SCHEMA IF NOT EXISTS mailtrace;

-- In production the application provides mailtrace.notification_event and mailtrace.contact (tables or
-- views). Where they are missing (the demo, the tests) mailtrace creates them as plain tables, with the
-- indexes CONTRACT.md §1 asks for, and records that it did: indexes go only on relations mailtrace created.
CREATE TABLE IF NOT EXISTS mailtrace.created_input (
    relation   text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF to_regclass('mailtrace.notification_event') IS NULL THEN
        CREATE TABLE mailtrace.notification_event (
            event_id           text PRIMARY KEY,
            subject_type       text        NOT NULL,
            subject_id         text        NOT NULL,
            notification_type  text        NOT NULL,
            recipient_email    text        NOT NULL,
            provider           text        NOT NULL,
            provider_reference text,
            client_reference   text,
            sent_at            timestamptz NOT NULL,
            local_status       text        NOT NULL
        );
        CREATE INDEX notification_event_provider_reference_idx
            ON mailtrace.notification_event (provider, provider_reference);
        CREATE INDEX notification_event_client_reference_idx
            ON mailtrace.notification_event (provider, client_reference);
        CREATE INDEX notification_event_sent_at_idx
            ON mailtrace.notification_event (sent_at);
        INSERT INTO mailtrace.created_input (relation) VALUES ('notification_event');
    END IF;
    IF to_regclass('mailtrace.contact') IS NULL THEN
        CREATE TABLE mailtrace.contact (
            subject_type text        NOT NULL,
            subject_id   text        NOT NULL,
            email        text        NOT NULL,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (subject_type, subject_id)
        );
        CREATE INDEX contact_updated_at_idx ON mailtrace.contact (updated_at);
        INSERT INTO mailtrace.created_input (relation) VALUES ('contact');
    END IF;
END $$;

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
    event_id        text PRIMARY KEY,
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
