SELECT incident_id, subject_type, subject_id, generation, reference, recipient_email,
       template, language, notification_type, provider
FROM mailtrace.resend_request
WHERE dag_run_id = %s AND chunk_index = %s AND status = 'claimed'
ORDER BY subject_id, generation
