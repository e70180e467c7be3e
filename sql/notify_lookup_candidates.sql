-- Logged Notify emails worth asking about by id: still pending and older than what the list
-- walk re-reads, or still without any provider record after the grace period; and still inside
-- Notify's retention, since older ones can no longer be answered. Least recently checked first.
-- Asked by the provider reference, else by the client reference exactly when reconcile would match by it
-- (no provider reference at all). A blank reference is none: asking Notify for reference '' would list
-- every notification, and reconcile can match nothing by it.
SELECT e.event_id,
       nullif(btrim(e.provider_reference), ''),
       CASE WHEN e.provider_reference IS NULL THEN nullif(btrim(e.client_reference), '') END
FROM mailtrace.notification_status e
LEFT JOIN mailtrace.provider_lookup l ON l.event_id = e.event_id
WHERE e.provider = %(provider)s
  AND e.local_status = 'SENT'
  AND e.sent_at >= %(retained_since)s
  AND (btrim(e.provider_reference) <> '' OR (e.provider_reference IS NULL AND btrim(e.client_reference) <> ''))
  AND ((e.delivery_status = 'pending' AND e.sent_at < %(list_covers_from)s)
       OR (e.delivery_status IS NULL AND e.sent_at < %(unconfirmed_before)s))
ORDER BY l.last_checked_at NULLS FIRST, e.sent_at, e.event_id
LIMIT %(limit)s
