UPDATE mailtrace.resend_request
SET dag_run_id = %(run_id)s, chunk_index = %(chunk_index)s, status = 'claimed',
    template = %(template)s, language = %(language)s,
    notification_type = %(notification_type)s,
    recipient_email = CASE WHEN attempts = 0 THEN %(email)s ELSE recipient_email END,
    provider = CASE WHEN NOT attempt_open THEN %(provider)s ELSE provider END,
    error = NULL, updated_at = now()
WHERE reference = %(reference)s AND status <> 'sent'
