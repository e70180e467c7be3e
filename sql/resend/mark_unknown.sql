UPDATE mailtrace.resend_request SET status = 'unknown', error = %s, updated_at = now()
WHERE reference = %s AND status = 'claimed'
