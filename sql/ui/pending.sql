-- Delivery page: notifications still without a final verdict (pending or never seen) that were
-- sent before `older_than`, oldest first. An event without a verdict has no row in mailtrace.delivery, so this
-- reads the log before `older_than` (mailtrace adds no index to the application's log to avoid that).
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
 ORDER BY e.sent_at, e.event_id
 LIMIT %(limit)s
