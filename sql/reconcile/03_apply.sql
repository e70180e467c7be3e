-- Write only verdicts that changed, so a re-run touches nothing and delivery_updated_at means
-- "when the verdict last changed".
UPDATE mailtrace.notification_event e
SET delivery_status = v.delivery_status,
    failure_reason = v.failure_reason,
    delivery_detail = v.delivery_detail,
    delivery_updated_at = now()
FROM reconcile_verdict v
WHERE e.event_id = v.event_id
  AND (e.delivery_status, e.failure_reason, e.delivery_detail)
      IS DISTINCT FROM (v.delivery_status, v.failure_reason, v.delivery_detail)
