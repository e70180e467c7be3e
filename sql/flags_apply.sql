-- Bring mailtrace.address_flag in line with pg_temp.flag_verdict for the subjects in pg_temp.flag_scope
-- and write one flag_history row per flag set or cleared. One statement, one snapshot; with nothing new
-- it writes nothing (not even an unchanged row).
WITH desired AS (
    SELECT * FROM pg_temp.flag_verdict WHERE flagged_at IS NOT NULL
),
previous AS (
    SELECT f.*
      FROM mailtrace.address_flag f
      JOIN pg_temp.flag_scope s USING (subject_type, subject_id)
),
transition AS (
    -- No verdict row: the contact is gone. Another address: the contact changed. Same address: a later
    -- delivery, else the evidence itself changed (a verdict revised, the threshold raised).
    SELECT p.subject_type, p.subject_id, p.email, 'cleared' AS action, p.failure_reason,
           CASE WHEN v.email IS DISTINCT FROM p.email THEN 'contact_change'
                WHEN v.delivered_at > p.flagged_at THEN 'delivery'
                ELSE 'recomputed' END AS cause,
           CASE WHEN v.email = p.email AND v.delivered_at > p.flagged_at THEN v.delivered_event_id END AS event_id,
           CASE WHEN v.email IS DISTINCT FROM p.email THEN coalesce(v.contact_updated_at, now())
                WHEN v.delivered_at > p.flagged_at THEN v.delivered_at
                ELSE now() END AS happened_at
      FROM previous p
      LEFT JOIN pg_temp.flag_verdict v USING (subject_type, subject_id)
     WHERE v.flagged_at IS NULL OR v.email <> p.email
    UNION ALL
    SELECT d.subject_type, d.subject_id, d.email, 'set', d.start_failure_reason, d.cause,
           d.start_event_id, d.flagged_at
      FROM desired d
      LEFT JOIN previous p USING (subject_type, subject_id)
     WHERE p.email IS DISTINCT FROM d.email
),
history AS (
    INSERT INTO mailtrace.flag_history
           (subject_type, subject_id, email, action, failure_reason, cause, event_id, happened_at)
    SELECT subject_type, subject_id, email, action, failure_reason, cause, event_id, happened_at
      FROM transition
     -- a contact change onto an address that already failed: the clear comes before the set
     ORDER BY subject_type, subject_id, action = 'set'
    RETURNING action
),
removed AS (
    DELETE FROM mailtrace.address_flag f
     USING previous p
     WHERE f.subject_type = p.subject_type
       AND f.subject_id = p.subject_id
       AND NOT EXISTS (SELECT 1 FROM desired d
                        WHERE d.subject_type = p.subject_type AND d.subject_id = p.subject_id)
),
upserted AS (
    INSERT INTO mailtrace.address_flag AS f
           (subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id)
    SELECT subject_type, subject_id, email, failure_reason, cause, flagged_at, last_failed_event_id
      FROM desired
        ON CONFLICT (subject_type, subject_id) DO UPDATE
       SET email = EXCLUDED.email,
           failure_reason = EXCLUDED.failure_reason,
           cause = EXCLUDED.cause,
           flagged_at = EXCLUDED.flagged_at,
           last_failed_event_id = EXCLUDED.last_failed_event_id,
           updated_at = now()
     WHERE (f.email, f.failure_reason, f.cause, f.flagged_at, f.last_failed_event_id)
           IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.failure_reason, EXCLUDED.cause,
                             EXCLUDED.flagged_at, EXCLUDED.last_failed_event_id)
)
SELECT count(*) FILTER (WHERE action = 'set') AS set,
       count(*) FILTER (WHERE action = 'cleared') AS cleared
  FROM history;
