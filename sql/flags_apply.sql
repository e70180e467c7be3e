-- Recompute the flag of every subject in scope from the event log and the contact table, write one
-- flag_history row per transition and bring mailtrace.address_flag in line. One statement, so every
-- part sees the same snapshot; running it again with no new data changes nothing.
--
-- Rule (per subject, over its notifications sent to its current address, normalised lower(btrim())):
-- the address is flagged when, among the failures sent no earlier than its latest delivery, there is a
-- hard bounce (permanent_failure: invalid_address / suppressed) or at least %(soft_failure_threshold)s
-- soft ones (temporary_failure: mailbox_full / no_receipt; NULL threshold: soft failures never flag).
-- Only a strictly later-sent delivery (or complaint: delivered, then marked as spam) clears it; other
-- outcomes (technical failures, send failures, content rejections, pending) say nothing about the
-- address and are ignored.
--
-- Parameters: full (boolean: every subject), events_since / contacts_since (timestamptz: the
-- incremental scope; NULL when full), soft_failure_threshold (integer or NULL).
WITH scope AS (
    SELECT subject_type, subject_id FROM mailtrace.contact WHERE %(full)s
    UNION
    SELECT subject_type, subject_id FROM mailtrace.address_flag WHERE %(full)s
    UNION
    SELECT subject_type, subject_id FROM mailtrace.notification_event
     WHERE NOT %(full)s AND delivery_updated_at > %(events_since)s
    UNION
    SELECT subject_type, subject_id FROM mailtrace.contact
     WHERE NOT %(full)s AND updated_at > %(contacts_since)s
    UNION
    -- Flags whose contact changed or vanished, whatever its updated_at says: cheap (flags are few)
    -- and it makes clearing on a contact change independent of the cursor.
    SELECT f.subject_type, f.subject_id
      FROM mailtrace.address_flag f
      LEFT JOIN mailtrace.contact c USING (subject_type, subject_id)
     WHERE NOT %(full)s AND (c.email IS NULL OR lower(btrim(c.email)) <> f.email)
),
current_contact AS (
    SELECT c.subject_type, c.subject_id, lower(btrim(c.email)) AS email, c.updated_at
      FROM scope s
      JOIN mailtrace.contact c USING (subject_type, subject_id)
),
evidence AS (
    SELECT cc.subject_type, cc.subject_id, e.event_id, e.sent_at, e.failure_reason,
           CASE WHEN e.delivery_status IN ('delivered', 'complaint') THEN 'delivered'
                WHEN e.delivery_status = 'permanent_failure' THEN 'hard'
                ELSE 'soft' END AS kind
      FROM current_contact cc
      JOIN mailtrace.notification_event e
        ON e.subject_type = cc.subject_type
       AND e.subject_id = cc.subject_id
       AND lower(btrim(e.recipient_email)) = cc.email
     WHERE e.delivery_status IN ('delivered', 'complaint')
        OR (e.delivery_status = 'permanent_failure' AND e.failure_reason IN ('invalid_address', 'suppressed'))
        OR (e.delivery_status = 'temporary_failure' AND e.failure_reason IN ('mailbox_full', 'no_receipt'))
),
-- Failures not followed by a strictly later-sent delivery, numbered per kind from both ends.
open_failure AS (
    SELECT ev.*,
           row_number() OVER (PARTITION BY subject_type, subject_id, kind
                              ORDER BY sent_at, event_id) AS nth,
           row_number() OVER (PARTITION BY subject_type, subject_id, kind
                              ORDER BY sent_at DESC, event_id DESC) AS nth_latest
      FROM evidence ev
     WHERE ev.kind <> 'delivered'
       AND NOT EXISTS (SELECT 1
                         FROM evidence d
                        WHERE d.subject_type = ev.subject_type
                          AND d.subject_id = ev.subject_id
                          AND d.kind = 'delivered'
                          AND d.sent_at > ev.sent_at)
),
-- The failure that made the address flagged: the first hard bounce or the N-th soft failure,
-- whichever was sent first.
flag_start AS (
    SELECT DISTINCT ON (subject_type, subject_id)
           subject_type, subject_id, event_id, sent_at, failure_reason,
           CASE kind WHEN 'hard' THEN 'bounce' ELSE 'soft_failures' END AS cause
      FROM open_failure
     WHERE (kind = 'hard' AND nth = 1) OR (kind = 'soft' AND nth = %(soft_failure_threshold)s)
     ORDER BY subject_type, subject_id, sent_at, event_id
),
-- What the dashboard shows: the latest hard bounce if there is one, else the latest soft failure.
latest_failure AS (
    SELECT DISTINCT ON (subject_type, subject_id) subject_type, subject_id, event_id, failure_reason
      FROM open_failure
     WHERE nth_latest = 1
     ORDER BY subject_type, subject_id, kind = 'hard' DESC
),
desired AS (
    SELECT cc.subject_type, cc.subject_id, cc.email, lf.failure_reason, fs.cause,
           fs.sent_at AS flagged_at, lf.event_id AS last_failed_event_id,
           fs.event_id AS start_event_id, fs.failure_reason AS start_failure_reason
      FROM current_contact cc
      JOIN flag_start fs USING (subject_type, subject_id)
      JOIN latest_failure lf USING (subject_type, subject_id)
),
previous AS (
    SELECT f.*
      FROM mailtrace.address_flag f
      JOIN scope s USING (subject_type, subject_id)
),
latest_delivery AS (
    SELECT DISTINCT ON (subject_type, subject_id) subject_type, subject_id, event_id, sent_at
      FROM evidence
     WHERE kind = 'delivered'
     ORDER BY subject_type, subject_id, sent_at DESC, event_id DESC
),
transition AS (
    SELECT p.subject_type, p.subject_id, p.email, 'cleared' AS action, p.failure_reason,
           CASE WHEN cc.email IS DISTINCT FROM p.email THEN 'contact_change'
                WHEN ld.sent_at > p.flagged_at THEN 'delivery'
                ELSE 'recomputed' END AS cause,
           CASE WHEN cc.email IS NOT DISTINCT FROM p.email AND ld.sent_at > p.flagged_at
                THEN ld.event_id END AS event_id,
           CASE WHEN cc.email IS DISTINCT FROM p.email THEN coalesce(cc.updated_at, now())
                WHEN ld.sent_at > p.flagged_at THEN ld.sent_at
                ELSE now() END AS happened_at
      FROM previous p
      LEFT JOIN desired d USING (subject_type, subject_id)
      LEFT JOIN current_contact cc USING (subject_type, subject_id)
      LEFT JOIN latest_delivery ld USING (subject_type, subject_id)
     WHERE d.email IS DISTINCT FROM p.email
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
     -- a contact change that lands on an already-failing address: the clear comes before the set
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
SELECT (SELECT count(*) FROM scope) AS evaluated,
       count(*) FILTER (WHERE action = 'set') AS set,
       count(*) FILTER (WHERE action = 'cleared') AS cleared
  FROM history;
