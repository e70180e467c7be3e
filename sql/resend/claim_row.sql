INSERT INTO mailtrace.resend_request
    (incident_id, subject_type, subject_id, generation, template, language,
     notification_type, recipient_email, reference, dag_run_id, chunk_index, forced,
     provider)
VALUES (%(incident_id)s, %(subject_type)s, %(subject_id)s, %(generation)s, %(template)s,
        %(language)s, %(notification_type)s, %(email)s, %(reference)s, %(run_id)s,
        %(chunk_index)s, %(forced)s, %(provider)s)
ON CONFLICT DO NOTHING
