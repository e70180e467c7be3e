SELECT 1 FROM mailtrace.report_manifest WHERE bucket = %s AND s3_key = %s
