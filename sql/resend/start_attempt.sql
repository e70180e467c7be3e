UPDATE mailtrace.resend_request
SET attempts = attempts + 1, last_attempt_at = clock_timestamp(), attempt_open = true,
    updated_at = now()
WHERE reference = %s
