-- Keep mailtrace.event_reference_alias in step with the log rows sent since %(alias_since)s: one row for each
-- event whose references are not already in the form they are matched in. The rows that need an alias or
-- have one were found by 01_alias_candidates.sql. Events whose alias changed are affected (03_events.sql):
-- their matches may have changed.
WITH upserted AS (
    INSERT INTO mailtrace.event_reference_alias AS a
           (event_id, provider, provider_reference_key, client_reference_key)
    SELECT event_id, provider, provider_reference_key, client_reference_key
      FROM mailtrace.reconcile_alias_candidates
     WHERE provider_reference_key IS NOT NULL OR client_reference_key IS NOT NULL
        ON CONFLICT (event_id) DO UPDATE
       SET provider = EXCLUDED.provider,
           provider_reference_key = EXCLUDED.provider_reference_key,
           client_reference_key = EXCLUDED.client_reference_key
     WHERE (a.provider, a.provider_reference_key, a.client_reference_key)
           IS DISTINCT FROM (EXCLUDED.provider, EXCLUDED.provider_reference_key, EXCLUDED.client_reference_key)
    RETURNING a.event_id
),
removed AS (
    DELETE FROM mailtrace.event_reference_alias a
     WHERE EXISTS (SELECT 1 FROM mailtrace.reconcile_alias_candidates s
                    WHERE s.event_id = a.event_id
                      AND s.provider_reference_key IS NULL AND s.client_reference_key IS NULL)
        -- a catch-up also drops aliases of events no longer in the log
        OR (%(catch_up)s AND NOT EXISTS (SELECT 1 FROM mailtrace.event_log e WHERE e.event_id = a.event_id))
    RETURNING a.event_id
)
INSERT INTO pg_temp.reconcile_alias_changed (event_id)
SELECT event_id FROM upserted
UNION ALL
SELECT event_id FROM removed
