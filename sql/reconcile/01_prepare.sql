-- The events whose verdict may change in this run, gathered by the next statements.
CREATE TEMP TABLE reconcile_affected (event_id text PRIMARY KEY) ON COMMIT DROP
