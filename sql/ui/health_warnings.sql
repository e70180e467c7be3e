-- The health panel's pipeline warnings: those still open (see migration 015), newest first; warnings
-- about one event (event_kinds: nothing resolves them) only when last met since shown_since.
SELECT kind, subject, message, first_seen_at, last_seen_at, run_count
  FROM mailtrace.pipeline_warning
 WHERE resolved_at IS NULL
   AND (kind <> ALL (%(event_kinds)s::text[]) OR last_seen_at >= %(shown_since)s)
 ORDER BY last_seen_at DESC, kind, subject
