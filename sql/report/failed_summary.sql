-- Failure counts for the report's email: this period and the one before it, by notification type,
-- delivery status and failure reason. Parameters: previous_start, period_start, period_end
-- (instants; previous period is [previous_start, period_start)), failed_statuses (text[]).
SELECT CASE WHEN e.sent_at >= %(period_start)s THEN 'current' ELSE 'previous' END AS period,
       e.notification_type,
       e.delivery_status,
       e.failure_reason,
       count(*) AS failures
FROM mailtrace.notification_status AS e
WHERE e.sent_at >= %(previous_start)s
  AND e.sent_at < %(period_end)s
  AND e.delivery_status = ANY (%(failed_statuses)s)
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
