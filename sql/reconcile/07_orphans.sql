-- Provider notifications seen in this run that match no event in the log (on the log's own column or
-- through mailtrace.event_reference_alias, as in 03_affected.sql).
INSERT INTO mailtrace.orphan_notification AS o
    (provider, provider_reference, recipient_email, client_reference, last_status)
SELECT DISTINCT ON (p.provider, p.provider_reference, p.recipient_email)
       p.provider, p.provider_reference, p.recipient_email, p.client_reference, p.raw_status
FROM mailtrace.provider_event p
WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
  AND NOT EXISTS (
      SELECT 1 FROM mailtrace.event_log e
      WHERE e.provider = p.provider AND e.provider_reference = p.provider_reference)
  AND NOT EXISTS (
      SELECT 1 FROM mailtrace.event_reference_alias a
      WHERE a.provider = p.provider AND a.provider_reference_key = p.provider_reference)
  AND NOT EXISTS (
      SELECT 1 FROM mailtrace.event_log e
      WHERE p.client_reference IS NOT NULL AND e.provider = p.provider
        AND e.provider_reference IS NULL AND e.client_reference = p.client_reference)
  AND NOT EXISTS (
      SELECT 1 FROM mailtrace.event_reference_alias a
      WHERE p.client_reference IS NOT NULL AND a.provider = p.provider
        AND a.client_reference_key = p.client_reference)
ORDER BY p.provider, p.provider_reference, p.recipient_email, p.event_at DESC, p.id DESC
ON CONFLICT (provider, provider_reference, recipient_email) DO UPDATE
SET last_status = EXCLUDED.last_status,
    client_reference = coalesce(EXCLUDED.client_reference, o.client_reference),
    last_seen_at = now()
