-- Addresses newly flagged for a report's email: flags SET (flag_history action 'set') whose recorded_at
-- falls in the report's window [flags_since, flags_until), which for a weekly report starts where the
-- previous weekly report's ended. recorded_at, not happened_at: a bounce reconciled on Monday morning
-- for an email sent late on Sunday is flagged after that week's report and before the next one.
-- Listed: those still in effect now (the subject's current contact address is flagged, as in the
-- contract view mailtrace.flagged_address), at most max_rows per failure reason (the email lists a few per
-- heading), each with how many are flagged for its reason in all. Counted, not listed: those that cleared
-- since (contact changed, a later email delivered). Parameters: flags_since, flags_until, max_rows.
-- Always returns at least one row: the counts, with the listed columns null when nothing is listed.
WITH set_in_window AS (
    SELECT DISTINCT ON (h.subject_type, h.subject_id, h.email)
           h.subject_type, h.subject_id, h.email, h.failure_reason, h.happened_at, h.recorded_at
      FROM mailtrace.flag_history AS h
     WHERE h.action = 'set'
       AND h.recorded_at >= %(flags_since)s
       AND h.recorded_at < %(flags_until)s
     ORDER BY h.subject_type, h.subject_id, h.email, h.recorded_at, h.id
),
classified AS (
    SELECT s.*,
           EXISTS (SELECT 1
                     FROM mailtrace.flagged_address AS fa
                    WHERE fa.subject_type = s.subject_type
                      AND fa.subject_id = s.subject_id
                      AND lower(btrim(fa.email)) = s.email) AS still_flagged
      FROM set_in_window AS s
),
counts AS (
    SELECT count(*) FILTER (WHERE still_flagged) AS total,
           count(*) FILTER (WHERE NOT still_flagged) AS cleared
      FROM classified
),
ranked AS (
    SELECT k.*,
           count(*) OVER (PARTITION BY k.failure_reason) AS reason_total,
           row_number() OVER (PARTITION BY k.failure_reason
                              ORDER BY k.recorded_at, k.subject_type, k.subject_id COLLATE "C",
                                       k.email COLLATE "C") AS reason_rank
      FROM classified AS k
     WHERE k.still_flagged
)
SELECT c.total, c.cleared,
       l.subject_type, l.subject_id, l.email, l.failure_reason, l.happened_at, l.recorded_at, l.reason_total
  FROM counts AS c
  LEFT JOIN LATERAL (
        SELECT r.* FROM ranked AS r WHERE r.reason_rank <= %(max_rows)s
       ) AS l ON true
 ORDER BY l.recorded_at, l.subject_type, l.subject_id COLLATE "C", l.email COLLATE "C"
