-- The health panel's pipeline warnings: those still open (see migration 015), newest first.
SELECT kind, subject, message, first_seen_at, last_seen_at, run_count
  FROM mailtrace.pipeline_warning
 WHERE resolved_at IS NULL
 ORDER BY last_seen_at DESC, kind, subject
