-- Delivery page, subject look-up: the subject types this subject id exists under. Where indexes lead
-- with subject_type (contact's primary key; the event log if the application indexes it so), walk its
-- distinct values (a loose index scan: one index probe per type) and keep those having this id.
WITH RECURSIVE event_types AS (
    (SELECT e.subject_type FROM mailtrace.event_log e ORDER BY e.subject_type LIMIT 1)
    UNION ALL
    SELECT (SELECT e.subject_type
              FROM mailtrace.event_log e
             WHERE e.subject_type > t.subject_type
             ORDER BY e.subject_type
             LIMIT 1)
      FROM event_types t
     WHERE t.subject_type IS NOT NULL
),
contact_types AS (
    (SELECT c.subject_type FROM mailtrace.contact c ORDER BY c.subject_type LIMIT 1)
    UNION ALL
    SELECT (SELECT c.subject_type
              FROM mailtrace.contact c
             WHERE c.subject_type > t.subject_type
             ORDER BY c.subject_type
             LIMIT 1)
      FROM contact_types t
     WHERE t.subject_type IS NOT NULL
),
known_types AS (
    SELECT subject_type FROM event_types WHERE subject_type IS NOT NULL
    UNION
    SELECT subject_type FROM contact_types WHERE subject_type IS NOT NULL
)
SELECT k.subject_type
  FROM known_types k
 WHERE EXISTS (SELECT 1 FROM mailtrace.event_log e
                WHERE e.subject_type = k.subject_type AND e.subject_id = %(subject_id)s)
    OR EXISTS (SELECT 1 FROM mailtrace.contact c
                WHERE c.subject_type = k.subject_type AND c.subject_id = %(subject_id)s)
    OR EXISTS (SELECT 1 FROM mailtrace.flag_history h
                WHERE h.subject_type = k.subject_type AND h.subject_id = %(subject_id)s)
 ORDER BY k.subject_type
