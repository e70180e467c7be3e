-- Delivery page: notifications still without a final verdict (pending, or never seen: `status` 'none') that
-- were sent before `older_than`, oldest first, one page. An event without a verdict has no row in
-- mailtrace.delivery, so this reads the log before `older_than` (mailtrace adds no index to the application's
-- log to avoid that).
SELECT e.event_id,
       e.subject_type,
       e.subject_id,
       e.notification_type,
       e.recipient_email,
       e.provider,
       e.provider_reference,
       e.local_status,
       e.delivery_status,
       e.sent_at,
       count(*) OVER () AS total
  FROM mailtrace.notification_status e
 WHERE (e.delivery_status IS NULL OR e.delivery_status = 'pending')
   AND e.sent_at < %(older_than)s
   AND (%(since)s::timestamptz IS NULL OR e.sent_at >= %(since)s::timestamptz)
   AND (%(notification_type)s::text IS NULL OR e.notification_type = %(notification_type)s::text)
   AND (%(provider)s::text IS NULL OR e.provider = %(provider)s::text)
   AND (%(status)s::text IS NULL
        OR (%(status)s::text = 'pending' AND e.delivery_status = 'pending')
        OR (%(status)s::text = 'none' AND e.delivery_status IS NULL))
 ORDER BY e.sent_at, e.event_id
 LIMIT %(limit)s OFFSET %(offset)s
