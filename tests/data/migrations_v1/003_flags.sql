-- Invalid-address flags (issue 5, CONTRACT.md §3): the current flag per subject, its audit history,
-- the contract view the examiner dashboard reads and a read-only export for the application.
-- A flag is a pure function of the event log and the contact table (see sql/flags_verdict.sql), so
-- address_flag can always be recomputed; flag_history records every transition as it was observed.

-- Current state: one row per subject whose address is flagged. `email` is the normalised address
-- (lower(btrim())) the flag was computed for; a contact change makes it stale at once (the views
-- compare it with the contact table) and the next flags run clears it with a history row.
CREATE TABLE IF NOT EXISTS mailtrace.address_flag (
    subject_type         text        NOT NULL,
    subject_id           text        NOT NULL,
    email                text        NOT NULL,
    failure_reason       text        NOT NULL,
    -- 'bounce' (a hard bounce: invalid_address / suppressed) or 'soft_failures' (N in a row).
    cause                text        NOT NULL CHECK (cause IN ('bounce', 'soft_failures')),
    -- sent_at of the failed notification that started the current run of failures.
    flagged_at           timestamptz NOT NULL,
    last_failed_event_id text        NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_type, subject_id)
);

-- Audit: one row per flag set or cleared, never updated. Read by the weekly report and by examiners
-- asking "since when" and "why did it clear".
CREATE TABLE IF NOT EXISTS mailtrace.flag_history (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_type   text        NOT NULL,
    subject_id     text        NOT NULL,
    email          text        NOT NULL,
    action         text        NOT NULL CHECK (action IN ('set', 'cleared')),
    failure_reason text,
    -- set: 'bounce' | 'soft_failures'; cleared: 'contact_change' | 'delivery' | 'recomputed'
    -- ('recomputed': the evidence itself changed, e.g. a verdict was revised or the threshold raised).
    cause          text        NOT NULL,
    event_id       text,
    happened_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS flag_history_subject_idx
    ON mailtrace.flag_history (subject_type, subject_id, id);
CREATE INDEX IF NOT EXISTS flag_history_recorded_at_idx
    ON mailtrace.flag_history (recorded_at);

-- The incremental flags run starts from events whose verdict changed since its cursor and from
-- contacts changed since its cursor; these keep both look-ups cheap however long the log grows.
CREATE INDEX IF NOT EXISTS notification_event_delivery_updated_at_idx
    ON mailtrace.notification_event (delivery_updated_at);
CREATE INDEX IF NOT EXISTS contact_updated_at_idx
    ON mailtrace.contact (updated_at);

-- CONTRACT.md §3. Joined with the contact table so a row disappears the moment the contact's
-- address really changes (case and surrounding spaces do not count), even before the next run.
CREATE OR REPLACE VIEW mailtrace.flagged_address AS
SELECT f.subject_type,
       f.subject_id,
       c.email,
       f.failure_reason,
       f.flagged_at,
       f.last_failed_event_id
  FROM mailtrace.address_flag f
  JOIN mailtrace.contact c
    ON c.subject_type = f.subject_type
   AND c.subject_id = f.subject_id
   AND lower(btrim(c.email)) = f.email;

-- Write-back hook point (issue 5 item 4): the application (e.g. the registry's own database, through
-- postgres_fdw or a read-only role: GRANT USAGE ON SCHEMA mailtrace, GRANT SELECT ON this view)
-- reads this view to show the flag on its own screens. mailtrace never writes into the application's
-- tables. Columns are a stable interface: add, never rename or remove.
CREATE OR REPLACE VIEW mailtrace.flagged_address_export AS
SELECT f.subject_type,
       f.subject_id,
       c.email,
       f.failure_reason,
       f.cause,
       f.flagged_at,
       f.last_failed_event_id
  FROM mailtrace.address_flag f
  JOIN mailtrace.contact c
    ON c.subject_type = f.subject_type
   AND c.subject_id = f.subject_id
   AND lower(btrim(c.email)) = f.email;

COMMENT ON VIEW mailtrace.flagged_address_export IS
    'Read-only export of flagged contact addresses for the application (one row per subject whose '
    'current address is flagged). cause: bounce | soft_failures. flagged_at: sent_at of the notification '
    'that started the failures. Stable columns: add, never rename or remove.';
