-- The report stays owed; the error (masked) is kept for the late line and for whoever looks.
UPDATE mailtrace.report_manifest SET email_error = %(error)s, email_failed_at = now()
WHERE bucket = %(bucket)s AND s3_key = %(s3_key)s
