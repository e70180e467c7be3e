-- One verdict per affected event, recomputed from its whole provider history, so receipts that
-- arrive late or out of order give the same answer as receipts that arrive in order.
-- Winner: a final status beats pending (a final status never goes back to pending); among
-- finals the latest-dated wins (a bounce dated after a delivery wins; an earlier-dated delivery
-- never replaces a bounce or complaint); equal timestamps go to the more severe status.
-- The affected events with their normalised references come from 03_events.sql.
-- Matching: references normalised on both sides (mailtrace.reference_key(); the provider's side is stored
-- normalised); by provider reference; for an event the log has no provider reference for, by client
-- reference, but only provider notifications no other event claims by its provider reference (an app that
-- reuses a reference for a retry must not lend the retry's receipt to the failed first attempt; those
-- notifications are found in mailtrace.unclaimed_notification, 02_unclaimed_and_orphans.sql, and checked
-- again here). The recipient must match where a provider reports several recipients of one message (SES);
-- Notify's id identifies one email, whatever form the app logged the address in.
CREATE UNLOGGED TABLE mailtrace.reconcile_verdict AS
WITH candidates AS (
    SELECT ev.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
      FROM mailtrace.reconcile_events ev
      JOIN mailtrace.provider_event p
        ON p.provider = ev.provider AND p.provider_reference = ev.provider_reference_key
     WHERE p.delivery_status IS NOT NULL
       AND (p.provider = 'gc_notify' OR p.recipient_email IN ('', ev.recipient_address))
    UNION ALL
    SELECT ev.event_id, p.id, p.delivery_status, p.failure_reason, p.detail, p.event_at
      FROM mailtrace.reconcile_events ev
      JOIN mailtrace.unclaimed_notification u
        ON u.provider = ev.provider AND u.client_reference = ev.client_reference_key
      JOIN mailtrace.provider_event p
        ON p.provider = u.provider AND p.provider_reference = u.provider_reference
       AND p.client_reference = u.client_reference
     -- implied by the join, but said: the planner then probes the few events matched this way through the
     -- unclaimed notifications' client reference index instead of hashing them all
     WHERE ev.client_reference_key IS NOT NULL
       AND p.delivery_status IS NOT NULL
       AND (p.provider = 'gc_notify' OR p.recipient_email IN ('', ev.recipient_address))
       AND NOT EXISTS (
           SELECT 1 FROM mailtrace.event_log claimed
            WHERE claimed.provider = p.provider AND claimed.provider_reference = p.provider_reference)
       AND NOT EXISTS (
           SELECT 1 FROM mailtrace.event_reference_alias claimed
            WHERE claimed.provider = p.provider AND claimed.provider_reference_key = p.provider_reference)
),
-- The event ids are sorted (here, for the join to the events, and for the output) by their bytes
-- (COLLATE "C"): the same groups as a deterministic collation gives (a database's default collation always
-- is), with cheaper comparisons than a locale's (1,000,000 events: 4.5 s -> 3.8 s). Joins to delivery and
-- provider_lookup stay in the database's collation, so small runs probe their keys.
winners AS (
    SELECT DISTINCT ON (event_id COLLATE "C") event_id, delivery_status, failure_reason, detail
      FROM candidates
     ORDER BY event_id COLLATE "C",
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
    SELECT ev.event_id, ev.recipient_address, ev.sent_at, d.event_id IS NOT NULL AS has_verdict,
           d.delivery_status, d.failure_reason, d.delivery_detail,
           w.delivery_status AS provider_status, w.failure_reason AS provider_reason,
           w.detail AS provider_detail, l.last_checked_at,
           CASE
               WHEN w.event_id IS NOT NULL
                    AND (w.delivery_status <> 'pending' OR d.delivery_status IS NULL
                         OR d.delivery_status = 'pending') THEN 'provider'
               WHEN w.event_id IS NOT NULL THEN 'keep'
               WHEN ev.local_status = 'FAILED' THEN 'send_failed'
               WHEN ev.local_status = 'SENT' AND l.found = false
                    AND l.last_checked_at >= ev.sent_at + %(grace)s THEN 'not_at_provider'
               WHEN ev.local_status = 'SENT' AND ev.provider = 'ses'
                    AND ev.sent_at < %(ses_silent_before)s
                    AND ev.provider_reference_key IS NOT NULL
                    -- silence means no event at all: not one for another recipient, nor one unmapped
                    AND NOT ev.ses_heard_of
                    THEN 'ses_silent'
               ELSE 'keep'
           END AS basis
      FROM mailtrace.reconcile_events ev
      LEFT JOIN mailtrace.delivery d ON d.event_id = ev.event_id
      LEFT JOIN winners w ON w.event_id = ev.event_id COLLATE "C"
      LEFT JOIN mailtrace.provider_lookup l ON l.event_id = ev.event_id
),
verdicts AS (
    SELECT event_id, recipient_address, sent_at, has_verdict,
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
)
SELECT *
  FROM verdicts
 -- nothing known yet (no provider record, nothing to infer): no verdict row
 WHERE delivery_status IS NOT NULL
 -- in key order, so 06_apply_new adds to delivery's primary key sequentially instead of at random (byte
 -- order, the database's own order where its collation is C or C.UTF-8)
 ORDER BY event_id COLLATE "C"
