-- Delivery page, search: the subjects a subject id, an email address or a provider reference leads to.
-- Each branch is an index look-up: the subject id and reference in the spellings given, upper- and
-- lower-cased (mailtrace may not index the application's log on lower(...)); the address through
-- mailtrace.delivery's lower-cased recipient_address (every notification with a verdict).
WITH spellings AS (
    SELECT DISTINCT s FROM unnest(ARRAY[%(q)s, upper(%(q)s), lower(%(q)s)]) AS s
),
hits AS (
    SELECT e.subject_type, e.subject_id, 'subject id' AS matched_by
      FROM mailtrace.event_log e
     WHERE e.subject_id IN (SELECT s FROM spellings)
    UNION
    SELECT c.subject_type, c.subject_id, 'subject id'
      FROM mailtrace.contact c
     WHERE c.subject_id IN (SELECT s FROM spellings)
    UNION
    SELECT e.subject_type, e.subject_id, 'email address'
      FROM mailtrace.delivery d
      JOIN mailtrace.event_log e ON e.event_id = d.event_id
     WHERE d.recipient_address = lower(btrim(%(q)s))

    UNION
    SELECT e.subject_type, e.subject_id, 'provider reference'
      FROM mailtrace.event_log e
     WHERE e.provider IN ('gc_notify', 'ses')
       AND e.provider_reference IN (SELECT s FROM spellings)
)
SELECT h.subject_type,
       h.subject_id,
       string_agg(DISTINCT h.matched_by, ', ') AS matched_by,
       (SELECT c.email FROM mailtrace.contact c
         WHERE c.subject_type = h.subject_type AND c.subject_id = h.subject_id) AS email
  FROM hits h
 GROUP BY h.subject_type, h.subject_id
 ORDER BY h.subject_type, h.subject_id
 LIMIT %(limit)s
