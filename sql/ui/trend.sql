-- Delivery page, trend chart: counts per day (in the deployment's time zone), provider, notification type,
-- verdict and failure reason. Same population as mailtrace.deliverability_daily (QUEUED sends excluded,
-- NULL verdict counted as pending), filtered on sent_at so a window is an index range scan however long
-- the log grows; tests check the two agree (with UTC days).
SELECT (e.sent_at AT TIME ZONE %(timezone)s)::date AS day,
       e.provider,
       e.notification_type,
       coalesce(e.delivery_status, 'pending')      AS delivery_status,
       e.failure_reason,
       count(*)                                    AS n
  FROM mailtrace.notification_status e
 WHERE e.local_status <> 'QUEUED'
   AND e.sent_at >= %(since)s
   AND e.sent_at < %(until)s
   AND (%(provider)s::text IS NULL OR e.provider = %(provider)s::text)
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 1, 2, 3, 4, 5 NULLS FIRST
