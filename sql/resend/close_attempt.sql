UPDATE mailtrace.resend_request SET attempt_open = false, error = %s, updated_at = now()
WHERE reference = %s
