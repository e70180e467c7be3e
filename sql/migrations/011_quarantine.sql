-- Poison provider items are set aside whole, with the reason, so one bad item never stops the rest.
-- Idempotent: every statement is IF NOT EXISTS.

-- SES: the exact bytes received (UTF-8, lone surrogates kept with surrogatepass), because `body` is
-- stored made storable (NUL and lone surrogates replaced) and so may differ from what arrived.
ALTER TABLE mailtrace.ses_dead_letter ADD COLUMN IF NOT EXISTS raw bytea;

-- GC Notify: notifications the list walk or an id look-up could not turn into an observation. Notify
-- keeps such a notification for days and every walk meets it again: one row per distinct raw JSON,
-- counting the sightings. A quarantined notification never moves the list watermark.
CREATE TABLE IF NOT EXISTS mailtrace.notify_quarantine (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id text,
    source          text        NOT NULL,
    reason          text        NOT NULL,
    -- The notification as Notify sent it, re-encoded as ASCII JSON (\u escapes keep NUL and lone
    -- surrogates, which Postgres text and jsonb refuse).
    raw_json        text        NOT NULL,
    raw_sha256      text        NOT NULL UNIQUE,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    times_seen      integer     NOT NULL DEFAULT 1
);
