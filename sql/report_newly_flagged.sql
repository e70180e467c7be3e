-- Addresses flagged during the period (flag_history action 'set'), one row per subject and address,
-- earliest flag first. Parameters: period_start, period_end (instants, [start, end)), max_rows.
-- The total comes with every row so the email can say how many were left out.
WITH flagged AS (
    SELECT DISTINCT ON (h.subject_type, h.subject_id, h.email)
           h.subject_type, h.subject_id, h.email, h.failure_reason, h.happened_at
    FROM mailtrace.flag_history AS h
    WHERE h.action = 'set'
      AND h.happened_at >= %(period_start)s
      AND h.happened_at < %(period_end)s
    ORDER BY h.subject_type, h.subject_id, h.email, h.happened_at
)
SELECT f.subject_type, f.subject_id, f.email, f.failure_reason, f.happened_at, count(*) OVER () AS total
FROM flagged AS f
ORDER BY f.happened_at, f.subject_type, f.subject_id COLLATE "C", f.email COLLATE "C"
LIMIT %(max_rows)s
