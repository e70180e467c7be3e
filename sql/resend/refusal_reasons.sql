SELECT coalesce(error, 'no reason recorded'), count(*) FROM mailtrace.resend_request
WHERE dag_run_id = %s AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s
