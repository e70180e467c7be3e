SELECT status, dag_run_id, attempts, attempt_open,
       last_attempt_at IS NULL
       OR clock_timestamp() >= last_attempt_at + make_interval(secs => %s)
FROM mailtrace.resend_request WHERE reference = %s
