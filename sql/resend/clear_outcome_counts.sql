-- The run's decision counts are replaced as a whole whenever its outcome CSV is (re)written.
DELETE FROM mailtrace.resend_outcome_count WHERE dag_run_id = %(run_id)s
