SELECT s3_key FROM mailtrace.report_manifest
WHERE bucket = %s AND email_owed AND sent_at IS NULL AND period_end <= %s
ORDER BY period_start, s3_key
