SELECT 1 FROM mailtrace.report_manifest
WHERE bucket = %s AND period_kind = 'weekly' AND sent_at IS NOT NULL AND period_start < %s
LIMIT 1
