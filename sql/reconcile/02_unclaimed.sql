-- Keep mailtrace.unclaimed_notification: the provider notifications no log row claims by its provider
-- reference (on the log's own column or through mailtrace.event_reference_alias), the only ones an event
-- logged without a provider reference may be matched to by client reference (05_verdict.sql).
-- * This run's new notifications that nothing claims are added (after 02_aliases.sql, so this run's aliases
--   count as claims).
-- * A catch-up run removes those a log row has claimed since (the application logged its row after the
--   provider's first status). Until then such a row is only a candidate that 05_verdict.sql's own check
--   turns down, so a verdict never depends on how current this table is.
-- A notification that a log row already claims when its first status arrives is never added, so an event
-- logged without a provider reference is not matched to it even if the application later removes the
-- claiming row's reference (the one case this table matches differently from reading the whole history).
WITH claimed AS (
    DELETE FROM mailtrace.unclaimed_notification u
     WHERE %(catch_up)s
       AND (EXISTS (SELECT 1 FROM mailtrace.event_log e
                     WHERE e.provider = u.provider AND e.provider_reference = u.provider_reference)
            OR EXISTS (SELECT 1 FROM mailtrace.event_reference_alias a
                        WHERE a.provider = u.provider AND a.provider_reference_key = u.provider_reference))
)
INSERT INTO mailtrace.unclaimed_notification (provider, provider_reference, client_reference)
SELECT DISTINCT p.provider, p.provider_reference, p.client_reference
  FROM mailtrace.provider_event p
 WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
   AND p.client_reference IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM mailtrace.event_log e
                    WHERE e.provider = p.provider AND e.provider_reference = p.provider_reference)
   AND NOT EXISTS (SELECT 1 FROM mailtrace.event_reference_alias a
                    WHERE a.provider = p.provider AND a.provider_reference_key = p.provider_reference)
ON CONFLICT DO NOTHING
