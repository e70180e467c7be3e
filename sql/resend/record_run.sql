INSERT INTO mailtrace.resend_run
    (dag_run_id, incident_id, params, dry_run, outcome_uri, rows_read, planned, skipped,
     rejected, chunks)
VALUES (%(run_id)s, %(incident_id)s, %(params)s, %(dry_run)s, %(outcome_uri)s, %(rows_read)s,
        %(planned)s, %(skipped)s, %(rejected)s, %(chunks)s)
ON CONFLICT (dag_run_id) DO UPDATE SET
    params = EXCLUDED.params, dry_run = EXCLUDED.dry_run, outcome_uri = EXCLUDED.outcome_uri,
    rows_read = EXCLUDED.rows_read, planned = EXCLUDED.planned, skipped = EXCLUDED.skipped,
    rejected = EXCLUDED.rejected, chunks = EXCLUDED.chunks, planned_at = now(),
    finished_at = NULL
