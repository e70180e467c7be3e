-- First verdicts: a plain INSERT (05_verdict.sql saw no row for these events, and only reconcile writes
-- mailtrace.delivery, under the load lock). About two thirds of the cost of INSERT … ON CONFLICT, which
-- checks every row for a conflict before inserting it. In the byte order 05 left them in: the key's own
-- order where the database's collation is C or C.UTF-8.
INSERT INTO mailtrace.delivery
       (event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at)
SELECT event_id, delivery_status, failure_reason, delivery_detail, recipient_address, sent_at
  FROM mailtrace.reconcile_verdict
 WHERE NOT has_verdict
