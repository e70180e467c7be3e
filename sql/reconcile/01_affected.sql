-- The events whose verdict may change in this run: those matched by provider observations that
-- arrived since the last run (by provider_reference, or by client_reference when the app has no
-- provider reference), plus events that still have no verdict at all: recently sent ones (new app
-- rows, candidates for not_at_provider) and failed sends of any age (send_failed needs no provider).
-- Restricting to this delta keeps the cost of a run proportional to new data, not to the history.
CREATE TEMP TABLE reconcile_affected ON COMMIT DROP AS
SELECT e.event_id
FROM mailtrace.provider_event p
JOIN mailtrace.notification_event e
  ON e.provider = p.provider AND e.provider_reference = p.provider_reference
WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
UNION
SELECT e.event_id
FROM mailtrace.provider_event p
JOIN mailtrace.notification_event e
  ON e.provider = p.provider AND e.client_reference = p.client_reference AND e.provider_reference IS NULL
WHERE p.id > %(cursor)s AND p.id <= %(high_water)s AND p.client_reference IS NOT NULL
UNION
SELECT event_id
FROM mailtrace.notification_event
WHERE delivery_status IS NULL
  AND local_status = 'SENT'
  AND sent_at >= %(open_since)s
UNION
SELECT event_id
FROM mailtrace.notification_event
WHERE delivery_status IS NULL
  AND local_status = 'FAILED'
