-- Delivery page, subject look-up: every flag set and clear for the subject, in the order they happened.
SELECT h.id,
       h.subject_type,
       h.subject_id,
       h.email,
       h.action,
       h.failure_reason,
       h.cause,
       h.event_id,
       h.happened_at,
       h.recorded_at
  FROM mailtrace.flag_history h
 WHERE h.subject_type = ANY (%(subject_types)s)
   AND h.subject_id = %(subject_id)s
 ORDER BY h.happened_at, h.id
