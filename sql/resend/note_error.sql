UPDATE mailtrace.resend_request SET error = %s, updated_at = now() WHERE reference = %s
