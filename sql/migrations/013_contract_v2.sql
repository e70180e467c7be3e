-- Contract version 2 (docs/CONTRACT.md): mailtrace reads the application's mailtrace.notification_event and
-- mailtrace.contact (tables or views) and never writes, alters or indexes them. Verdicts live in
-- mailtrace.delivery; mailtrace.notification_status is the event log with its delivery status.
--
-- On a warehouse laid out by version 1 (verdict columns on notification_event) this also upgrades (§5):
-- it copies the verdicts into mailtrace.delivery with one INSERT ... SELECT, which holds only ACCESS SHARE
-- on the event log (the application keeps inserting and updating meanwhile), then drops mailtrace's
-- columns, constraints and indexes from it. Those drops need ACCESS EXCLUSIVE but are catalogue changes
-- (no rewrite, no scan) taken at the very end of the transaction, under lock_timeout: if the application
-- holds a long transaction on the table the migration fails at once (to be run again later) instead of
-- queueing every application query behind it. Safe to run twice: every step checks what is there.

-- The provider's identifier of one email, as matched: surrounding white space (spaces, tabs, line breaks)
-- never counts; GC Notify's ids are UUIDs, so case does not count either (SES message ids are compared
-- case-sensitively). Blank is none.
CREATE OR REPLACE FUNCTION mailtrace.reference_key(provider text, reference text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN nullif(CASE WHEN provider = 'gc_notify' THEN lower(btrim(reference, E' \t\n\r\f\x0b'))
                       ELSE btrim(reference, E' \t\n\r\f\x0b') END, '');

-- The application's own reference passed to the provider (free text chosen by the application): white space
-- around it never counts, case does.
CREATE OR REPLACE FUNCTION mailtrace.client_reference_key(reference text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN nullif(btrim(reference, E' \t\n\r\f\x0b'), '');

-- Verdicts (CONTRACT.md §2). recipient_address and sent_at are the project's own: copied from the event
-- when its verdict is written, so flags find every notification to an address with a verdict here,
-- without an index on the application's table.
CREATE TABLE IF NOT EXISTS mailtrace.delivery (
    event_id            text PRIMARY KEY,
    delivery_status     text        NOT NULL
        CHECK (delivery_status IN ('pending', 'delivered', 'permanent_failure', 'temporary_failure',
                                   'technical_failure', 'complaint', 'not_at_provider', 'send_failed')),
    failure_reason      text
        CHECK (failure_reason IN ('invalid_address', 'suppressed', 'mailbox_full', 'content_rejected',
                                  'no_receipt', 'provider_error', 'unknown')),
    delivery_detail     text,
    delivery_updated_at timestamptz NOT NULL DEFAULT now(),
    recipient_address   text        NOT NULL,
    sent_at             timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_updated_at_idx ON mailtrace.delivery (delivery_updated_at);
CREATE INDEX IF NOT EXISTS delivery_recipient_address_idx ON mailtrace.delivery (recipient_address);
CREATE INDEX IF NOT EXISTS delivery_pending_idx ON mailtrace.delivery (sent_at) WHERE delivery_status = 'pending';

-- Emails mailtrace sends itself (the resend DAG): the same columns as the application's event log.
CREATE TABLE IF NOT EXISTS mailtrace.own_notification_event (
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
CREATE INDEX IF NOT EXISTS own_notification_event_provider_reference_idx
    ON mailtrace.own_notification_event (provider, provider_reference);
CREATE INDEX IF NOT EXISTS own_notification_event_client_reference_idx
    ON mailtrace.own_notification_event (provider, client_reference);
CREATE INDEX IF NOT EXISTS own_notification_event_sent_at_idx
    ON mailtrace.own_notification_event (sent_at);

-- Every notification to track: the application's log and mailtrace's own sends.
CREATE OR REPLACE VIEW mailtrace.event_log AS
SELECT event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
       client_reference, sent_at, local_status
  FROM mailtrace.notification_event
UNION ALL
SELECT event_id, subject_type, subject_id, notification_type, recipient_email, provider, provider_reference,
       client_reference, sent_at, local_status
  FROM mailtrace.own_notification_event;

-- Log rows whose references are not already in matched form (spaces around them, a Notify id in upper
-- case). Reconcile matches a provider's id to the log's own column through the application's index
-- (CONTRACT.md §1), and to these rows through this table's: normalised matching without an expression
-- index on the application's table. Filled by reconcile from the rows it reads (see sql/reconcile/).
CREATE TABLE IF NOT EXISTS mailtrace.event_reference_alias (
    event_id               text PRIMARY KEY,
    provider               text NOT NULL,
    -- mailtrace.reference_key() of the log's provider_reference when that differs from it
    provider_reference_key text,
    -- client_reference_key() of the log's client_reference when the log has no provider reference (only
    -- then is it matched) and it differs from it
    client_reference_key   text,
    CHECK (provider_reference_key IS NOT NULL OR client_reference_key IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS event_reference_alias_provider_reference_idx
    ON mailtrace.event_reference_alias (provider, provider_reference_key);
CREATE INDEX IF NOT EXISTS event_reference_alias_client_reference_idx
    ON mailtrace.event_reference_alias (provider, client_reference_key);

-- Reconcile revisits events whose look-up outcome changed since its last run.
CREATE INDEX IF NOT EXISTS provider_lookup_checked_idx ON mailtrace.provider_lookup (last_checked_at);

-- Version 1 upgrade, part 1: verdicts into mailtrace.delivery (ACCESS SHARE on the event log only).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = to_regclass('mailtrace.notification_event')
                  AND attname = 'delivery_status' AND NOT attisdropped) THEN
        EXECUTE $copy$
            INSERT INTO mailtrace.delivery
                   (event_id, delivery_status, failure_reason, delivery_detail, delivery_updated_at,
                    recipient_address, sent_at)
            SELECT event_id, delivery_status, failure_reason, delivery_detail, coalesce(delivery_updated_at, now()),
                   lower(btrim(recipient_email)), sent_at
              FROM mailtrace.notification_event
             WHERE delivery_status IS NOT NULL
            ON CONFLICT (event_id) DO NOTHING
        $copy$;
    END IF;
END $$;

-- Views read by examiners' tools and by the pipeline (CONTRACT.md §2-3); replacing deliverability_daily
-- here also moves its dependency off the version-1 columns before they are dropped.
CREATE OR REPLACE VIEW mailtrace.notification_status AS
SELECT e.event_id, e.subject_type, e.subject_id, e.notification_type, e.recipient_email, e.provider,
       e.provider_reference, e.client_reference, e.sent_at, e.local_status,
       d.delivery_status, d.failure_reason, d.delivery_detail, d.delivery_updated_at
  FROM mailtrace.event_log e
  LEFT JOIN mailtrace.delivery d ON d.event_id = e.event_id;

-- CONTRACT.md §3: daily deliverability per notification type and provider (UTC days).
-- delivery_rate = delivered / events with a final verdict (pending and not-yet-known excluded,
-- so a day still receiving receipts is not reported as failing).
CREATE OR REPLACE VIEW mailtrace.deliverability_daily AS
SELECT (e.sent_at AT TIME ZONE 'UTC')::date                                       AS day,
       e.notification_type,
       e.provider,
       count(*)                                                                  AS sent,
       count(*) FILTER (WHERE e.delivery_status = 'delivered')                   AS delivered,
       count(*) FILTER (WHERE e.delivery_status = 'permanent_failure')           AS permanent_failure,
       count(*) FILTER (WHERE e.delivery_status = 'temporary_failure')           AS temporary_failure,
       count(*) FILTER (WHERE e.delivery_status = 'technical_failure')           AS technical_failure,
       count(*) FILTER (WHERE e.delivery_status = 'complaint')                   AS complaint,
       count(*) FILTER (WHERE e.delivery_status = 'not_at_provider')             AS not_at_provider,
       count(*) FILTER (WHERE e.delivery_status = 'pending' OR e.delivery_status IS NULL) AS pending,
       round(
           count(*) FILTER (WHERE e.delivery_status = 'delivered')::numeric
           / nullif(count(*) FILTER (WHERE e.delivery_status IS NOT NULL AND e.delivery_status <> 'pending'), 0),
           4)                                                                    AS delivery_rate
FROM mailtrace.notification_status e
WHERE e.local_status <> 'QUEUED'
GROUP BY 1, 2, 3;

-- Version 1 upgrade, part 2: mailtrace's columns, constraints and indexes off the application's tables.
-- Indexes CONTRACT.md §1 asks for ((provider, provider_reference), (provider, client_reference), (sent_at),
-- contact (updated_at)) stay: they serve the application's log, not mailtrace's columns.
DO $$
BEGIN
    PERFORM set_config('lock_timeout', '5s', true);
    -- The look-up record referenced the event log by a foreign key (a trigger on the application's table).
    ALTER TABLE mailtrace.provider_lookup DROP CONSTRAINT IF EXISTS provider_lookup_event_id_fkey;
    DROP INDEX IF EXISTS mailtrace.notification_event_open_idx;
    DROP INDEX IF EXISTS mailtrace.notification_event_failed_unjudged_idx;
    DROP INDEX IF EXISTS mailtrace.notification_event_delivery_updated_at_idx;
    DROP INDEX IF EXISTS mailtrace.notification_event_recipient_address_idx;
    DROP INDEX IF EXISTS mailtrace.notification_event_subject_idx;
    DROP INDEX IF EXISTS mailtrace.contact_address_idx;
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = to_regclass('mailtrace.notification_event')
                  AND attname = 'delivery_status' AND NOT attisdropped) THEN
        ALTER TABLE mailtrace.notification_event
            DROP CONSTRAINT IF EXISTS notification_event_delivery_status_check,
            DROP CONSTRAINT IF EXISTS notification_event_failure_reason_check,
            DROP COLUMN IF EXISTS delivery_status,
            DROP COLUMN IF EXISTS failure_reason,
            DROP COLUMN IF EXISTS delivery_detail,
            DROP COLUMN IF EXISTS delivery_updated_at;
    END IF;
END $$;
