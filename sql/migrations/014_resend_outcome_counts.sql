-- Resend (mailtrace_resend): how many rows of each run's ID list got each decision and reason, the figures
-- of its outcome CSV, so that the Delivery page and the run's summary can say what a resend did without
-- reading every outcome CSV back from S3. Written with the outcome CSV (by the plan, and again by the
-- summary when it marks sends whose outcome is unknown). Runs planned before this migration have none:
-- their totals are in mailtrace.resend_run (planned, skipped, rejected).
-- Idempotent: safe to apply to a warehouse that already has these objects.

CREATE TABLE IF NOT EXISTS mailtrace.resend_outcome_count (
    dag_run_id text    NOT NULL REFERENCES mailtrace.resend_run (dag_run_id) ON DELETE CASCADE,
    -- The outcome CSV's `decision` (send, would_send, skip, reject, unknown) and `reason` columns.
    decision   text    NOT NULL,
    reason     text    NOT NULL,
    row_count  integer NOT NULL CHECK (row_count > 0),
    PRIMARY KEY (dag_run_id, decision, reason)
);
