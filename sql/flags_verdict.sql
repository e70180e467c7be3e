-- What the flag rule says for every subject in scope (pg_temp.flag_scope) that has a contact.
--
-- Rule, over every notification sent to the subject's current address, whichever subject it was about
-- (the flag is about the address; both sides normalised lower(btrim())):
-- the address is flagged when, among the failures sent no earlier than its latest delivery, there is a
-- hard bounce (permanent_failure: invalid_address / suppressed) or at least %(soft_failure_threshold)s
-- soft ones (temporary_failure: mailbox_full / no_receipt; NULL threshold: soft failures never flag).
-- Only a strictly later-sent delivery (or complaint: delivered, then marked as spam) clears it. Other
-- outcomes (technical or send failures, content rejections, pending) say nothing about the address and
-- are ignored. The result depends on the data alone, never on the order it arrived in.
INSERT INTO pg_temp.flag_verdict
       (subject_type, subject_id, email, contact_updated_at, flagged_at, cause, start_event_id,
        start_failure_reason, failure_reason, last_failed_event_id, delivered_at, delivered_event_id)
WITH scoped AS (
    SELECT c.subject_type, c.subject_id, lower(btrim(c.email)) AS email, c.updated_at AS contact_updated_at
      FROM pg_temp.flag_scope s
      JOIN mailtrace.contact c USING (subject_type, subject_id)
),
-- Each address is judged once, however many subjects share it (a property manager's address may be the
-- contact of thousands of registrations), then the verdict is given to each of them.
-- Read from mailtrace.delivery, which keeps each verdict's normalised recipient address and send time.
evidence AS (
    SELECT a.email, e.event_id, e.sent_at, e.failure_reason,
           CASE WHEN e.delivery_status IN ('delivered', 'complaint') THEN 'delivered'
                WHEN e.delivery_status = 'permanent_failure' THEN 'hard'
                WHEN e.delivery_status = 'temporary_failure' THEN 'soft' END AS kind
      FROM (SELECT DISTINCT email FROM scoped) a
      LEFT JOIN mailtrace.delivery e
        ON e.recipient_address = a.email
       AND (e.delivery_status IN ('delivered', 'complaint')
            OR (e.delivery_status = 'permanent_failure' AND e.failure_reason IN ('invalid_address', 'suppressed'))
            OR (e.delivery_status = 'temporary_failure' AND e.failure_reason IN ('mailbox_full', 'no_receipt')))
),
-- A failure is still open when no delivery was sent strictly after it.
classified AS (
    SELECT ev.*,
           ev.kind IN ('hard', 'soft')
           AND ev.sent_at >= coalesce(max(ev.sent_at) FILTER (WHERE ev.kind = 'delivered') OVER address,
                                      '-infinity') AS is_open
      FROM evidence ev
    WINDOW address AS (PARTITION BY ev.email)
),
-- The failure that flags the address: any open hard bounce, or the N-th open soft failure.
marked AS (
    SELECT o.*,
           o.is_open AND (o.kind = 'hard' OR (o.kind = 'soft' AND o.soft_streak = %(soft_failure_threshold)s))
               AS flags_it
      FROM (SELECT w.*,
                   count(*) FILTER (WHERE w.is_open AND w.kind = 'soft')
                       OVER (PARTITION BY w.email ORDER BY w.sent_at, w.event_id ROWS UNBOUNDED PRECEDING)
                       AS soft_streak
              FROM classified w) o
),
judged AS (
    SELECT email,
           min(sent_at) FILTER (WHERE flags_it) AS flagged_at,
           (array_agg(CASE kind WHEN 'hard' THEN 'bounce' ELSE 'soft_failures' END ORDER BY sent_at, event_id)
                FILTER (WHERE flags_it))[1] AS cause,
           (array_agg(event_id ORDER BY sent_at, event_id) FILTER (WHERE flags_it))[1] AS start_event_id,
           (array_agg(failure_reason ORDER BY sent_at, event_id) FILTER (WHERE flags_it))[1]
               AS start_failure_reason,
           (array_agg(failure_reason ORDER BY kind = 'hard' DESC, sent_at DESC, event_id DESC)
                FILTER (WHERE is_open))[1] AS failure_reason,
           (array_agg(event_id ORDER BY kind = 'hard' DESC, sent_at DESC, event_id DESC)
                FILTER (WHERE is_open))[1] AS last_failed_event_id,
           max(sent_at) FILTER (WHERE kind = 'delivered') AS delivered_at,
           (array_agg(event_id ORDER BY sent_at DESC, event_id DESC) FILTER (WHERE kind = 'delivered'))[1]
               AS delivered_event_id
      FROM marked
     GROUP BY email
)
SELECT s.subject_type, s.subject_id, s.email, s.contact_updated_at,
       j.flagged_at, j.cause, j.start_event_id, j.start_failure_reason, j.failure_reason,
       j.last_failed_event_id, j.delivered_at, j.delivered_event_id
  FROM scoped s
  JOIN judged j USING (email);
