-- Verdicts go to mailtrace's own table; the application's log is only read. Write only verdicts that are new
-- or changed, so a re-run touches nothing and delivery_updated_at means "when the verdict last changed".
INSERT INTO mailtrace.delivery AS d
       (event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at)
SELECT event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at
  FROM pg_temp.reconcile_verdict
    ON CONFLICT (event_id) DO UPDATE
   SET delivery_status = EXCLUDED.delivery_status,
       failure_reason = EXCLUDED.failure_reason,
       delivery_detail = EXCLUDED.delivery_detail,
       delivery_updated_at = now(),
       recipient_address = EXCLUDED.recipient_address,
       sent_at = EXCLUDED.sent_at
 WHERE (d.delivery_status, d.failure_reason, d.delivery_detail)
       IS DISTINCT FROM (EXCLUDED.delivery_status, EXCLUDED.failure_reason, EXCLUDED.delivery_detail)
