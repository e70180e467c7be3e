SELECT status, count(*) FROM mailtrace.resend_request WHERE dag_run_id = %s GROUP BY status
