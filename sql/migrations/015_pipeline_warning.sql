-- Warnings the pipeline logs (a source index CONTRACT §1 asks for that the planner cannot use, a provider
-- status mailtrace does not map, ...), kept so the Delivery page's health panel can show them: a run's
-- log is rotated away, and nobody reads run logs to learn whether the pipeline is healthy. mailtrace's
-- own table (contract v2: nothing of the application's is touched). One row per distinct warning, upserted
-- by every run that meets it; a check that finds the condition gone sets resolved_at, and a warning met
-- again after that starts over (first_seen_at, run_count). Idempotent: IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS mailtrace.pipeline_warning (
    kind          text        NOT NULL,  -- missing_input_index, unmapped_notify_status, ...
    subject       text        NOT NULL,  -- what it is about, e.g. 'mailtrace.contact (updated_at)'
    message       text        NOT NULL,  -- the warning as the latest run logged it
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    run_count     bigint      NOT NULL DEFAULT 1 CHECK (run_count >= 1),
    resolved_at   timestamptz,           -- null while the condition holds
    PRIMARY KEY (kind, subject)
);

-- The health panel reads the warnings still open, newest first.
CREATE INDEX IF NOT EXISTS pipeline_warning_open_idx
    ON mailtrace.pipeline_warning (last_seen_at DESC) WHERE resolved_at IS NULL;
