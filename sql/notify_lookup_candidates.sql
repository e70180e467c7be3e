-- Logged Notify emails worth asking about by id: still pending and older than what the list
-- walk re-reads, or still without any provider record after the grace period; and still inside
-- Notify's retention, since older ones can no longer be answered. Least recently checked first.
SELECT e.event_id, e.provider_reference, e.client_reference
FROM mailtrace.notification_event e
LEFT JOIN mailtrace.provider_lookup l ON l.event_id = e.event_id
WHERE e.provider = %(provider)s
  AND e.local_status = 'SENT'
  AND e.sent_at >= %(retained_since)s
  AND (e.provider_reference IS NOT NULL OR e.client_reference IS NOT NULL)
  AND ((e.delivery_status = 'pending' AND e.sent_at < %(list_covers_from)s)
       OR (e.delivery_status IS NULL AND e.sent_at < %(unconfirmed_before)s))
ORDER BY l.last_checked_at NULLS FIRST, e.sent_at, e.event_id
LIMIT %(limit)s
