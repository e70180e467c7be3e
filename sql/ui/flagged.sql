-- Delivery page: subjects whose current contact address is flagged (CONTRACT.md §3), newest first, one page
-- (`total` counts every row the filters keep).
SELECT f.subject_type,
       f.subject_id,
       f.email,
       f.failure_reason,
       f.flagged_at,
       f.last_failed_event_id,
       count(*) OVER () AS total
  FROM mailtrace.flagged_address f
 WHERE (%(reason)s::text IS NULL OR f.failure_reason = %(reason)s::text)
   AND (%(subject_type)s::text IS NULL OR f.subject_type = %(subject_type)s::text)
   AND (%(since)s::timestamptz IS NULL OR f.flagged_at >= %(since)s::timestamptz)
   AND (%(until)s::timestamptz IS NULL OR f.flagged_at < %(until)s::timestamptz)
 ORDER BY f.flagged_at DESC, f.subject_type, f.subject_id
 LIMIT %(limit)s OFFSET %(offset)s
