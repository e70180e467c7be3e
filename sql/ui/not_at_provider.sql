-- Delivery page: notifications the application sent but the provider has no record of, newest first, one
-- page (`total` counts every row the filters keep).
SELECT e.event_id,
       e.subject_type,
       e.subject_id,
       e.notification_type,
       e.recipient_email,
       e.provider,
       e.provider_reference,
       e.sent_at,
       e.delivery_detail,
       e.delivery_updated_at,
       count(*) OVER () AS total
  FROM mailtrace.notification_status e
 WHERE e.delivery_status = 'not_at_provider'
   AND e.sent_at >= %(since)s
   AND (%(until)s::timestamptz IS NULL OR e.sent_at < %(until)s::timestamptz)
   AND (%(notification_type)s::text IS NULL OR e.notification_type = %(notification_type)s::text)
   AND (%(provider)s::text IS NULL OR e.provider = %(provider)s::text)
 ORDER BY e.sent_at DESC, e.event_id
 LIMIT %(limit)s OFFSET %(offset)s
