SELECT subject_id, email FROM mailtrace.contact
WHERE subject_type = %s AND subject_id = ANY(%s)
