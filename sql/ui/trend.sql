-- Delivery page, trend chart: counts per UTC day, notification type, verdict and failure reason.
-- Same population and days as mailtrace.deliverability_daily (QUEUED sends excluded, NULL verdict
-- counted as pending), but filtered on sent_at so a window is an index range scan however long
-- the log grows; tests check the two agree.
SELECT (e.sent_at AT TIME ZONE 'UTC')::date     AS day,
       e.notification_type,
       coalesce(e.delivery_status, 'pending')   AS delivery_status,
       e.failure_reason,
       count(*)                                 AS n
  FROM mailtrace.notification_status e
 WHERE e.local_status <> 'QUEUED'
   AND e.sent_at >= %(since)s
   AND e.sent_at < %(until)s
 GROUP BY 1, 2, 3, 4
 ORDER BY 1, 2, 3, 4 NULLS FIRST
