-- mailtrace.delivery loses delivery_pending_idx: no query reads it. Every reader of pending verdicts
-- (sql/notify_lookup_candidates.sql, sql/ui/pending.sql) goes through mailtrace.notification_status and
-- also wants the events with no verdict row at all ("delivery_status IS NULL"), which only a read of the
-- log finds, so the planner never drives those queries from this partial index; it was only ever written
-- to (by every first verdict that is pending and every verdict leaving pending). The three indexes left
-- are each read: the primary key (reconcile, the status view), delivery_updated_at (flags_scope.sql's
-- changed verdicts) and recipient_address (flags_verdict.sql, the Delivery page's search).
-- Only mailtrace's own table is touched; safe to run twice.
DROP INDEX IF EXISTS mailtrace.delivery_pending_idx;
