-- This run's provider notifications that no log row claims by provider reference (on the log's own column
-- or through mailtrace.event_reference_alias, after 02_aliases.sql so this run's aliases count), found once
-- and used twice:
-- * mailtrace.unclaimed_notification keeps those with a client reference: the only notifications an event
--   logged without a provider reference may be matched to (05_verdict.sql). A catch-up run also removes the
--   ones a log row has claimed since (the application logged its row after the provider's first status);
--   until then such a row is only a candidate that 05_verdict.sql's own check turns down, so a verdict never
--   depends on how current this table is. A notification that a log row claims when its statuses arrive, or
--   when a catch-up run looks, is left out until a new status of it arrives, so an event logged without a
--   provider reference is not matched to it if the application later removes the claiming row's reference
--   (the one case this table matches differently from reading the whole history).
-- * those that no event matches by client reference either are orphans (mailtrace.orphan_notification,
--   with their latest status; 08_adopted_orphans.sql removes them once the application's row appears).
-- One statement rather than two: the search for claims is most of the cost of each (0.75 s of a run over
-- 1,000,000 new statuses).
WITH claimed AS (
    DELETE FROM mailtrace.unclaimed_notification u
     WHERE %(catch_up)s
       AND (EXISTS (SELECT 1 FROM mailtrace.event_log e
                     WHERE e.provider = u.provider AND e.provider_reference = u.provider_reference)
            OR EXISTS (SELECT 1 FROM mailtrace.event_reference_alias a
                        WHERE a.provider = u.provider AND a.provider_reference_key = u.provider_reference))
),
new_unclaimed AS (
    SELECT p.id, p.provider, p.provider_reference, p.recipient_email, p.client_reference, p.raw_status,
           p.event_at
      FROM mailtrace.provider_event p
     WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
       AND NOT EXISTS (SELECT 1 FROM mailtrace.event_log e
                        WHERE e.provider = p.provider AND e.provider_reference = p.provider_reference)
       AND NOT EXISTS (SELECT 1 FROM mailtrace.event_reference_alias a
                        WHERE a.provider = p.provider AND a.provider_reference_key = p.provider_reference)
),
kept AS (
    INSERT INTO mailtrace.unclaimed_notification (provider, provider_reference, client_reference)
    SELECT DISTINCT provider, provider_reference, client_reference
      FROM new_unclaimed
     WHERE client_reference IS NOT NULL
    ON CONFLICT DO NOTHING
)
INSERT INTO mailtrace.orphan_notification AS o
    (provider, provider_reference, recipient_email, client_reference, last_status)
SELECT DISTINCT ON (p.provider, p.provider_reference, p.recipient_email)
       p.provider, p.provider_reference, p.recipient_email, p.client_reference, p.raw_status
  FROM new_unclaimed p
 WHERE NOT EXISTS (
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
