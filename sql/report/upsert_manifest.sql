-- The "newly flagged" window is fixed when a report is first built: a rebuild (a re-run, or the
-- following week's correction pass) keeps it, so the email lists the same flags and windows never overlap.
INSERT INTO mailtrace.report_manifest
    (bucket, s3_key, period_kind, period_start, period_end, period_timezone, period_label,
     row_count, byte_count, checksum_sha256, summary, built_run_id, flags_since, flags_until, email_owed,
     not_emailed_note)
VALUES (%(bucket)s, %(s3_key)s, %(period_kind)s, %(period_start)s, %(period_end)s, %(period_timezone)s,
        %(period_label)s, %(row_count)s, %(byte_count)s, %(checksum_sha256)s, %(summary)s, %(built_run_id)s,
        %(flags_since)s, %(flags_until)s, coalesce(%(email_owed)s::boolean, false), %(not_emailed_note)s)
ON CONFLICT (bucket, s3_key) DO UPDATE SET
    -- Owed once a build meant to email it, until an email goes out; a rebuild (email_owed NULL) keeps it.
    email_owed = report_manifest.email_owed
                 OR (coalesce(%(email_owed)s::boolean, false) AND report_manifest.sent_at IS NULL),
    not_emailed_note = CASE WHEN %(email_owed)s::boolean IS NULL THEN report_manifest.not_emailed_note
                            ELSE %(not_emailed_note)s END,
    period_kind = EXCLUDED.period_kind,
    period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end,
    period_timezone = EXCLUDED.period_timezone,
    period_label = EXCLUDED.period_label,
    row_count = EXCLUDED.row_count,
    byte_count = EXCLUDED.byte_count,
    checksum_sha256 = EXCLUDED.checksum_sha256,
    summary = EXCLUDED.summary,
    built_at = now(),
    built_run_id = EXCLUDED.built_run_id
