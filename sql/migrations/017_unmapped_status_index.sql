-- The provider statuses mailtrace could not map (delivery_status NULL) are rare; the check that resolves
-- their health-panel warning (sql/pipeline_warning/resolvable_unmapped_statuses.sql) finds them through
-- this small partial index instead of reading the whole history every run.
CREATE INDEX IF NOT EXISTS provider_event_unmapped_idx
    ON mailtrace.provider_event (provider, raw_status)
 WHERE delivery_status IS NULL;
