SELECT subject_id, email, failure_reason FROM mailtrace.flagged_address
WHERE subject_type = %s AND subject_id = ANY(%s)
