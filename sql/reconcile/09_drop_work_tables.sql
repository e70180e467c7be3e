-- The run's work tables (01_alias_candidates.sql, 03_events.sql, 05_verdict.sql) go with the transaction that
-- made them: no other session ever saw them, and the next run makes its own.
DROP TABLE mailtrace.reconcile_alias_candidates, mailtrace.reconcile_events, mailtrace.reconcile_verdict
