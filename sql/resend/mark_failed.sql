UPDATE mailtrace.resend_request
SET status = 'failed', attempt_open = false, error = %s, updated_at = now()
WHERE reference = %s AND status = 'claimed'
