INSERT INTO mailtrace.resend_outcome_count (dag_run_id, decision, reason, row_count)
SELECT %(run_id)s, c.decision, c.reason, c.row_count
  FROM unnest(%(decisions)s::text[], %(reasons)s::text[], %(row_counts)s::integer[])
       AS c (decision, reason, row_count)
