-- Provider notifications that no log row claims by its provider reference, with their client reference (an
-- event logged without a provider reference is matched by client reference, but only to such notifications:
-- README, Reconcile). Reconcile keeps it (sql/reconcile/02_unclaimed_and_orphans.sql) and finds an event's
-- notifications by client reference here, instead of through a (provider, client_reference) index on the
-- whole history: that index cost a load of 1,000,000 statuses about 2 s, for a match only the rare events
-- logged without a provider reference need. Rows are notifications, not statuses: their statuses stay in
-- provider_event.
CREATE TABLE IF NOT EXISTS mailtrace.unclaimed_notification (
    provider           text NOT NULL,
    provider_reference text NOT NULL,
    client_reference   text NOT NULL,
    PRIMARY KEY (provider, provider_reference, client_reference)
);
CREATE INDEX IF NOT EXISTS unclaimed_notification_client_reference_idx
    ON mailtrace.unclaimed_notification (provider, client_reference);

-- An existing history's unclaimed notifications, once. Claims are judged with the log's references
-- normalised here (not through event_reference_alias, which a warehouse upgraded from version 1 has not
-- filled yet); a notification kept here that some log row does claim is only a candidate that reconcile's
-- own check turns down, and the next catch-up run removes it.
INSERT INTO mailtrace.unclaimed_notification (provider, provider_reference, client_reference)
SELECT DISTINCT p.provider, p.provider_reference, p.client_reference
  FROM mailtrace.provider_event p
 WHERE p.client_reference IS NOT NULL
   AND NOT EXISTS (SELECT 1
                     FROM mailtrace.event_log e
                    WHERE e.provider = p.provider
                      AND mailtrace.reference_key(e.provider, e.provider_reference) = p.provider_reference)
ON CONFLICT DO NOTHING;

DROP INDEX IF EXISTS mailtrace.provider_event_client_reference_idx;
