-- CONTRACT.md §3: daily deliverability per notification type and provider (UTC days).
-- delivery_rate = delivered / events with a final verdict (pending and not-yet-known excluded,
-- so a day still receiving receipts is not reported as failing).
CREATE OR REPLACE VIEW mailtrace.deliverability_daily AS
SELECT (e.sent_at AT TIME ZONE 'UTC')::date                                       AS day,
       e.notification_type,
       e.provider,
       count(*)                                                                  AS sent,
       count(*) FILTER (WHERE e.delivery_status = 'delivered')                   AS delivered,
       count(*) FILTER (WHERE e.delivery_status = 'permanent_failure')           AS permanent_failure,
       count(*) FILTER (WHERE e.delivery_status = 'temporary_failure')           AS temporary_failure,
       count(*) FILTER (WHERE e.delivery_status = 'technical_failure')           AS technical_failure,
       count(*) FILTER (WHERE e.delivery_status = 'complaint')                   AS complaint,
       count(*) FILTER (WHERE e.delivery_status = 'not_at_provider')             AS not_at_provider,
       count(*) FILTER (WHERE e.delivery_status = 'pending' OR e.delivery_status IS NULL) AS pending,
       round(
           count(*) FILTER (WHERE e.delivery_status = 'delivered')::numeric
           / nullif(count(*) FILTER (WHERE e.delivery_status IS NOT NULL AND e.delivery_status <> 'pending'), 0),
           4)                                                                    AS delivery_rate
FROM mailtrace.notification_event e
WHERE e.local_status <> 'QUEUED'
GROUP BY 1, 2, 3;
