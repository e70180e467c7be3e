SELECT subject_id, generation, status, dag_run_id, sent_at, provider, attempt_open, reference
FROM mailtrace.resend_request
WHERE incident_id = %s AND subject_type = %s AND subject_id = ANY(%s)
ORDER BY subject_id, generation
FOR UPDATE
