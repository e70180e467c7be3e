-- Rows of the weekly failed-notification CSV (CONTRACT.md §4), in file order.
-- Parameters: period_start, period_end (instants, [start, end)), failed_statuses (text[]).
-- Oldest first; event_id breaks ties in byte order (COLLATE "C") so the order, and with it the
-- file's bytes, does not depend on the server's locale.
SELECT e.sent_at,
       e.notification_type,
       e.delivery_status,
       e.failure_reason,
       e.subject_id,
       e.subject_type,
       e.recipient_email,
       e.event_id,
       e.provider_reference,
       e.delivery_detail
FROM mailtrace.notification_status AS e
WHERE e.sent_at >= %(period_start)s
  AND e.sent_at < %(period_end)s
  AND e.delivery_status = ANY (%(failed_statuses)s)
ORDER BY e.sent_at, e.event_id COLLATE "C"
