-- Delivery page: where one resend run's outcome CSV is stored.
SELECT r.outcome_uri FROM mailtrace.resend_run r WHERE r.dag_run_id = %(run_id)s
