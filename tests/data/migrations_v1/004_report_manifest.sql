-- One row per failed-notification report object (CONTRACT.md §4): what period it covers, where it
-- is, what it contains and whether the examiners were sent it. A re-built report updates its row in
-- place, so the table holds exactly one row per S3 object.

CREATE TABLE IF NOT EXISTS mailtrace.report_manifest (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bucket          text        NOT NULL,
    s3_key          text        NOT NULL,
    -- 'weekly' for the scheduled ISO-week report, 'adhoc' for a manually chosen date range.
    period_kind     text        NOT NULL CHECK (period_kind IN ('weekly', 'adhoc')),
    -- [period_start, period_end) as instants; the local dates they came from are in period_label.
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    period_timezone text        NOT NULL,
    period_label    text        NOT NULL,
    row_count       bigint      NOT NULL CHECK (row_count >= 0),
    byte_count      bigint      NOT NULL CHECK (byte_count >= 0),
    checksum_sha256 text        NOT NULL CHECK (checksum_sha256 ~ '^[0-9a-f]{64}$'),
    -- Counts by notification type and by status/reason for this and the previous period, taken
    -- in the same snapshot as the CSV so the email and the file agree.
    summary         jsonb       NOT NULL,
    built_at        timestamptz NOT NULL DEFAULT now(),
    built_run_id    text,
    -- Filled once the email went out. sent_checksum says which content was sent, so a rebuild
    -- with different data is mailed again while a retry of an already-mailed report is not.
    recipients      text[],
    delivery        text        CHECK (delivery IN ('attachment', 'link')),
    message_id      text,
    sent_at         timestamptz,
    sent_run_id     text,
    sent_checksum   text,
    CONSTRAINT report_manifest_period_check CHECK (period_end > period_start),
    CONSTRAINT report_manifest_object_key UNIQUE (bucket, s3_key)
);

CREATE INDEX IF NOT EXISTS report_manifest_period_idx
    ON mailtrace.report_manifest (period_start, period_end);
