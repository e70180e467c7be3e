-- Delivery page, subject look-up: each notification's provider events in the order they happened.
-- Matched exactly as reconcile matches them (sql/reconcile/05_verdict.sql): references normalised, by
-- provider reference, or by client reference when the send returned none (only to notifications no other
-- log row claims by its provider reference); a multi-recipient message's events only for this recipient.
-- Unrecognised statuses (delivery_status NULL) are shown too, with their raw value.
SELECT x.event_id, x.id, x.raw_status, x.delivery_status, x.failure_reason, x.detail,
       x.event_at, x.observed_at, x.source
  FROM (
        SELECT e.event_id, p.id, p.raw_status, p.delivery_status, p.failure_reason, p.detail,
               p.event_at, p.observed_at, p.source
          FROM mailtrace.event_log e
          JOIN mailtrace.provider_event p
            ON p.provider = e.provider
           AND p.provider_reference = mailtrace.reference_key(e.provider, e.provider_reference)
         WHERE e.event_id = ANY (%(event_ids)s)
           AND p.recipient_email IN ('', lower(btrim(e.recipient_email)))
        UNION ALL
        SELECT e.event_id, p.id, p.raw_status, p.delivery_status, p.failure_reason, p.detail,
               p.event_at, p.observed_at, p.source
          FROM mailtrace.event_log e
          JOIN mailtrace.unclaimed_notification u
            ON u.provider = e.provider
           AND u.client_reference = mailtrace.client_reference_key(e.client_reference)
          JOIN mailtrace.provider_event p
            ON p.provider = u.provider
           AND p.provider_reference = u.provider_reference
           AND p.client_reference = u.client_reference
         WHERE e.event_id = ANY (%(event_ids)s)
           AND e.provider_reference IS NULL
           AND p.recipient_email IN ('', lower(btrim(e.recipient_email)))
           AND NOT EXISTS (SELECT 1 FROM mailtrace.event_log claimed
                            WHERE claimed.provider = p.provider
                              AND claimed.provider_reference = p.provider_reference)
           AND NOT EXISTS (SELECT 1 FROM mailtrace.event_reference_alias claimed
                            WHERE claimed.provider = p.provider
                              AND claimed.provider_reference_key = p.provider_reference)
       ) x
 ORDER BY x.event_id, x.event_at, x.id
