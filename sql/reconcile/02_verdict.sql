-- One verdict per affected event, recomputed from its whole provider history, so receipts that
-- arrive late or out of order give the same answer as receipts that arrive in order.
-- Winner: a final status beats pending (a final status never goes back to pending); among
-- finals the latest-dated wins (a bounce dated after a delivery wins; an earlier-dated delivery
-- never replaces a bounce or complaint); equal timestamps go to the more severe status.
CREATE TEMP TABLE reconcile_verdict ON COMMIT DROP AS
WITH candidates AS (
    SELECT e.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
    FROM reconcile_affected a
    JOIN mailtrace.notification_event e ON e.event_id = a.event_id
    JOIN mailtrace.provider_event p
      ON p.provider = e.provider AND p.provider_reference = e.provider_reference
    WHERE p.delivery_status IS NOT NULL
      AND p.recipient_email IN ('', lower(btrim(e.recipient_email)))
    UNION ALL
    SELECT e.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
    FROM reconcile_affected a
    JOIN mailtrace.notification_event e ON e.event_id = a.event_id
    JOIN mailtrace.provider_event p
      ON p.provider = e.provider AND p.client_reference = e.client_reference
    WHERE e.provider_reference IS NULL
      AND p.delivery_status IS NOT NULL
      AND p.recipient_email IN ('', lower(btrim(e.recipient_email)))
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
)
SELECT e.event_id,
       CASE
           WHEN w.event_id IS NOT NULL THEN w.delivery_status
           WHEN e.local_status = 'FAILED' THEN 'send_failed'
           WHEN e.local_status = 'SENT' AND l.found = false
                AND l.last_checked_at >= e.sent_at + %(grace)s THEN 'not_at_provider'
           ELSE e.delivery_status
       END AS delivery_status,
       CASE
           WHEN w.event_id IS NOT NULL THEN w.failure_reason
           WHEN e.local_status = 'FAILED' THEN 'provider_error'
           WHEN e.local_status = 'SENT' AND l.found = false
                AND l.last_checked_at >= e.sent_at + %(grace)s THEN 'unknown'
           ELSE e.failure_reason
       END AS failure_reason,
       CASE
           WHEN w.event_id IS NOT NULL THEN w.detail
           WHEN e.local_status = 'FAILED' THEN 'the application''s send call failed'
           WHEN e.local_status = 'SENT' AND l.found = false
                AND l.last_checked_at >= e.sent_at + %(grace)s
               THEN 'provider had no record of it when checked at '
                    || to_char(l.last_checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           ELSE e.delivery_detail
       END AS delivery_detail
FROM reconcile_affected a
JOIN mailtrace.notification_event e ON e.event_id = a.event_id
LEFT JOIN winners w ON w.event_id = a.event_id
LEFT JOIN mailtrace.provider_lookup l ON l.event_id = a.event_id
-- In the event log's physical order, so 03_apply writes its pages (and the indexes that follow
-- insertion order) sequentially instead of at random: a large run then costs a scan, not a seek per row.
ORDER BY e.ctid
