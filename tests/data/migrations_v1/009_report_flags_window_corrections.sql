-- Weekly report fixes (issue 6 review):
-- 1. "Newly flagged" means flags SET (flag_history.recorded_at) since the previous weekly report, not
--    flags whose failed email was sent in the period. Each report keeps the window of recorded_at it
--    lists, [flags_since, flags_until), fixed when it is first built (a rebuild keeps it), so
--    consecutive weekly reports tile time with no gap and no overlap.
-- 2. Late failures: the next weekly run rebuilds the previous week and mails a correction when the
--    content differs from what the examiners were sent. sent_row_count and sent_summary describe that
--    content, so the correction can say what changed; sent_kind says whether the last email was the
--    report itself or a correction.

ALTER TABLE mailtrace.report_manifest
    ADD COLUMN IF NOT EXISTS flags_since    timestamptz,
    ADD COLUMN IF NOT EXISTS flags_until    timestamptz,
    ADD COLUMN IF NOT EXISTS sent_row_count bigint CHECK (sent_row_count >= 0),
    ADD COLUMN IF NOT EXISTS sent_summary   jsonb,
    ADD COLUMN IF NOT EXISTS sent_kind      text CHECK (sent_kind IN ('report', 'correction'));

-- Reports built before this migration: their emails listed flags by the failed email's date, read
-- when they were built; the next report continues from their build time.
UPDATE mailtrace.report_manifest
   SET flags_since = period_start,
       flags_until = greatest(period_start, built_at)
 WHERE flags_until IS NULL;

UPDATE mailtrace.report_manifest
   SET sent_row_count = row_count,
       sent_summary = summary,
       sent_kind = 'report'
 WHERE sent_at IS NOT NULL
   AND sent_checksum = checksum_sha256
   AND sent_kind IS NULL;

UPDATE mailtrace.report_manifest
   SET sent_kind = 'report'
 WHERE sent_at IS NOT NULL
   AND sent_kind IS NULL;

-- build_report always fills the window; a row written some other way (null) reads as
-- [period_start, built_at), the same as the rows above.
ALTER TABLE mailtrace.report_manifest
    ADD CONSTRAINT report_manifest_flags_window_check CHECK (flags_until >= flags_since);

-- The previous weekly report's window end, looked up by every weekly build.
CREATE INDEX IF NOT EXISTS report_manifest_kind_period_idx
    ON mailtrace.report_manifest (period_kind, period_start);
