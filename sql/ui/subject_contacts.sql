-- Delivery page, subject look-up: the address of record and whether it is flagged now.
SELECT c.subject_type,
       c.subject_id,
       c.email,
       c.updated_at,
       f.failure_reason AS flag_reason,
       f.flagged_at,
       f.last_failed_event_id
  FROM mailtrace.contact c
  LEFT JOIN mailtrace.flagged_address f
    ON f.subject_type = c.subject_type AND f.subject_id = c.subject_id
 WHERE c.subject_type = ANY (%(subject_types)s)
   AND c.subject_id = %(subject_id)s
 ORDER BY c.subject_type
