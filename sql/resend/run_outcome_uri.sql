SELECT outcome_uri FROM mailtrace.resend_run WHERE dag_run_id = %s
