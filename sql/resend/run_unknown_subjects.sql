SELECT subject_id FROM mailtrace.resend_request
WHERE dag_run_id = %s AND status = 'unknown' ORDER BY subject_id
