-- Keep mailtrace.event_reference_alias in step with the log rows sent since %(alias_since)s (the rows
-- logged since the last run, with an overlap; the whole log in a catch-up run): one row for each event
-- whose references are not already in the form they are matched in. Almost every log row needs none, so
-- this reads the new rows (through the application's sent_at index) and writes next to nothing.
-- Events whose alias changed are affected (03_affected.sql): their matches may have changed.
WITH keyed AS (
    SELECT e.event_id,
           e.provider,
           CASE WHEN e.provider_reference IS DISTINCT FROM mailtrace.reference_key(e.provider, e.provider_reference)
                THEN mailtrace.reference_key(e.provider, e.provider_reference) END AS provider_reference_key,
           CASE WHEN e.provider_reference IS NULL
                 AND e.client_reference IS DISTINCT FROM mailtrace.client_reference_key(e.client_reference)
                THEN mailtrace.client_reference_key(e.client_reference) END AS client_reference_key
      FROM mailtrace.event_log e
     WHERE e.sent_at >= %(alias_since)s
),
-- the rows that need an alias, and those that have one (which may have to go): not the whole log, which a
-- catch-up run would otherwise hold in a temporary file only to find that almost none of it matters
seen AS (
    SELECT *
      FROM keyed
     WHERE provider_reference_key IS NOT NULL
        OR client_reference_key IS NOT NULL
        OR event_id IN (SELECT event_id FROM mailtrace.event_reference_alias)
),
upserted AS (
    INSERT INTO mailtrace.event_reference_alias AS a
           (event_id, provider, provider_reference_key, client_reference_key)
    SELECT event_id, provider, provider_reference_key, client_reference_key
      FROM seen
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
     WHERE EXISTS (SELECT 1 FROM seen s
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
