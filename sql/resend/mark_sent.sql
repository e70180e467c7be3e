UPDATE mailtrace.resend_request
SET status = 'sent', provider_reference = %(provider_reference)s, event_id = %(reference)s,
    sent_at = %(sent_at)s, attempt_open = false, error = NULL, updated_at = now()
WHERE reference = %(reference)s
