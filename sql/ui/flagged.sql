-- Delivery page: subjects whose current contact address is flagged (CONTRACT.md §3), newest first.
SELECT f.subject_type,
       f.subject_id,
       f.email,
       f.failure_reason,
       f.flagged_at,
       f.last_failed_event_id,
       count(*) OVER () AS total
  FROM mailtrace.flagged_address f
 ORDER BY f.flagged_at DESC, f.subject_type, f.subject_id
 LIMIT %(limit)s
