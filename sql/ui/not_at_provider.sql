-- Delivery page: notifications the application sent but the provider has no record of, newest first.
-- `total` counts the whole window, not just the rows returned.
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
 ORDER BY e.sent_at DESC, e.event_id
 LIMIT %(limit)s
