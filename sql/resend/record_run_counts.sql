UPDATE mailtrace.resend_run
SET sent = %(sent)s, failed = %(failed)s, unresolved = %(claimed)s, unknown = %(unknown)s,
    finished_at = now()
WHERE dag_run_id = %(run_id)s
