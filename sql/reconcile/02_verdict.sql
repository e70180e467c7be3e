-- One verdict per affected event, recomputed from its whole provider history, so receipts that
-- arrive late or out of order give the same answer as receipts that arrive in order.
-- Winner: a final status beats pending (a final status never goes back to pending); among
-- finals the latest-dated wins (a bounce dated after a delivery wins; an earlier-dated delivery
-- never replaces a bounce or complaint); equal timestamps go to the more severe status.
-- Matching: by provider_reference; for an event the app has no provider reference for, by
-- client_reference, but only provider notifications no other event claims by its provider
-- reference (an app that reuses a reference for a retry must not lend the retry's receipt to the
-- failed first attempt). The recipient must match where a provider reports several recipients of
-- one message (SES); Notify's id identifies one email, whatever form the app logged the address in.
CREATE TEMP TABLE reconcile_verdict ON COMMIT DROP AS
WITH candidates AS (
    SELECT e.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
    FROM reconcile_affected a
    JOIN mailtrace.notification_event e ON e.event_id = a.event_id
    JOIN mailtrace.provider_event p
      ON p.provider = e.provider AND p.provider_reference = e.provider_reference
    WHERE p.delivery_status IS NOT NULL
      AND (p.provider = 'gc_notify' OR p.recipient_email IN ('', lower(btrim(e.recipient_email))))
    UNION ALL
    SELECT e.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
    FROM reconcile_affected a
    JOIN mailtrace.notification_event e ON e.event_id = a.event_id
    JOIN mailtrace.provider_event p
      ON p.provider = e.provider AND p.client_reference = e.client_reference
    WHERE e.provider_reference IS NULL
      AND p.delivery_status IS NOT NULL
      AND (p.provider = 'gc_notify' OR p.recipient_email IN ('', lower(btrim(e.recipient_email))))
      AND NOT EXISTS (
          SELECT 1 FROM mailtrace.notification_event claimed
          WHERE claimed.provider = p.provider AND claimed.provider_reference = p.provider_reference)
),
winners AS (
    SELECT DISTINCT ON (event_id) event_id, delivery_status, failure_reason, detail
    FROM candidates
    ORDER BY event_id,
             (delivery_status <> 'pending') DESC,
             event_at DESC,
             array_position(ARRAY['pending', 'delivered', 'temporary_failure', 'technical_failure',
                                  'permanent_failure', 'complaint'], delivery_status) DESC,
             id DESC
),
-- What the verdict rests on: the provider's winning status; the app's own failed send; a look-up
-- that found nothing after the grace period; for SES, which cannot be asked about one email, no event
-- at all long after the send ('ses_silent'); or nothing new ('keep'). A provider that only says
-- pending never replaces a final verdict (not_at_provider, send_failed) already given.
judged AS (
    SELECT e.event_id, e.ctid AS row_location,
           e.delivery_status, e.failure_reason, e.delivery_detail,
           w.delivery_status AS provider_status, w.failure_reason AS provider_reason,
           w.detail AS provider_detail, l.last_checked_at,
           CASE
               WHEN w.event_id IS NOT NULL
                    AND (w.delivery_status <> 'pending' OR e.delivery_status IS NULL
                         OR e.delivery_status = 'pending') THEN 'provider'
               WHEN w.event_id IS NOT NULL THEN 'keep'
               WHEN e.local_status = 'FAILED' THEN 'send_failed'
               WHEN e.local_status = 'SENT' AND l.found = false
                    AND l.last_checked_at >= e.sent_at + %(grace)s THEN 'not_at_provider'
               WHEN e.local_status = 'SENT' AND e.provider = 'ses'
                    AND e.sent_at < %(ses_silent_before)s
                    AND btrim(e.provider_reference) <> ''
                    -- silence means no event at all: not one for another recipient, nor one unmapped
                    AND NOT EXISTS (
                        SELECT 1 FROM mailtrace.provider_event p
                        WHERE p.provider = 'ses' AND p.provider_reference = e.provider_reference)
                    THEN 'ses_silent'
               ELSE 'keep'
           END AS basis
    FROM reconcile_affected a
    JOIN mailtrace.notification_event e ON e.event_id = a.event_id
    LEFT JOIN winners w ON w.event_id = a.event_id
    LEFT JOIN mailtrace.provider_lookup l ON l.event_id = a.event_id
)
SELECT event_id,
       CASE basis
           WHEN 'provider' THEN provider_status
           WHEN 'keep' THEN delivery_status
           WHEN 'ses_silent' THEN 'not_at_provider'
           ELSE basis
       END AS delivery_status,
       CASE basis
           WHEN 'provider' THEN provider_reason
           WHEN 'keep' THEN failure_reason
           WHEN 'send_failed' THEN 'provider_error'
           ELSE 'unknown'
       END AS failure_reason,
       CASE basis
           WHEN 'provider' THEN provider_detail
           WHEN 'keep' THEN delivery_detail
           WHEN 'send_failed' THEN 'the application''s send call failed'
           WHEN 'ses_silent' THEN 'no SES event for it within ' || %(ses_grace_text)s || ' of sending'
           ELSE 'provider had no record of it when checked at '
                || to_char(last_checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
       END AS delivery_detail
FROM judged
-- In the event log's physical order, so 03_apply writes its pages (and the indexes that follow
-- insertion order) sequentially instead of at random: a large run then costs a scan, not a seek per row.
ORDER BY row_location
