-- Verdicts go to mailtrace's own table; the application's log is only read. Write only verdicts that changed,
-- so a re-run touches nothing and delivery_updated_at means "when the verdict last changed".
-- Events that already had a verdict when 05_verdict.sql read it; the others are new rows (06_apply_new.sql).
-- Only reconcile writes mailtrace.delivery, under the load lock, so what 05 read is still what is there.
UPDATE mailtrace.delivery AS d
   SET delivery_status = v.delivery_status,
       failure_reason = v.failure_reason,
       delivery_detail = v.delivery_detail,
       delivery_updated_at = now(),
       recipient_address = v.recipient_address,
       sent_at = v.sent_at
  FROM mailtrace.reconcile_verdict v
 WHERE v.has_verdict
   AND d.event_id = v.event_id
   AND (d.delivery_status, d.failure_reason, d.delivery_detail)
       IS DISTINCT FROM (v.delivery_status, v.failure_reason, v.delivery_detail)
