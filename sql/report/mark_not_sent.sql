UPDATE mailtrace.report_manifest SET email_error = %(error)s, email_failed_at = now()
WHERE bucket = %(bucket)s AND s3_key = %(s3_key)s
