-- Delivery page, subject look-up: the subject's notifications, newest first, one page (one more row than
-- the limit is asked for, so the page knows there are older ones).
SELECT e.event_id,
       e.subject_type,
       e.subject_id,
       e.notification_type,
       e.recipient_email,
       e.provider,
       e.provider_reference,
       e.client_reference,
       e.sent_at,
       e.local_status,
       e.delivery_status,
       e.failure_reason,
       e.delivery_detail,
       e.delivery_updated_at
  FROM mailtrace.notification_status e
 WHERE e.subject_type = ANY (%(subject_types)s)
   AND e.subject_id = %(subject_id)s
 ORDER BY e.sent_at DESC, e.event_id DESC
 LIMIT %(limit)s + 1 OFFSET %(offset)s
