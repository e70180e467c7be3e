UPDATE mailtrace.resend_request
SET status = 'unknown', updated_at = now(),
    error = coalesce(error, 'the last SES call may have been accepted; no MessageId recorded')
WHERE reference = ANY(%s) AND status = 'claimed'
