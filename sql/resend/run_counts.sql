-- What each resend run did, as rows (dag_run_id, kind, name, reason, n), folded by mailtrace.resend.counts:
--   decision: the outcome CSV's rows per decision and reason (mailtrace.resend_outcome_count); a run planned
--             before those were recorded gives its totals from resend_run instead, with reason NULL;
--   ledger:   the emails the run owns in the ledger, per status (sent, failed, claimed, unknown).
SELECT c.dag_run_id, 'decision' AS kind, c.decision AS name, c.reason, c.row_count::bigint AS n
  FROM mailtrace.resend_outcome_count c
 WHERE c.dag_run_id = ANY (%(run_ids)s)
UNION ALL
SELECT r.dag_run_id, 'decision', t.decision, NULL, t.n::bigint
  FROM mailtrace.resend_run r
 CROSS JOIN LATERAL (VALUES (CASE WHEN r.dry_run THEN 'would_send' ELSE 'send' END, r.planned),
                            ('skip', r.skipped),
                            ('reject', r.rejected)) AS t (decision, n)
 WHERE r.dag_run_id = ANY (%(run_ids)s)
   AND t.n > 0
   AND NOT EXISTS (SELECT 1 FROM mailtrace.resend_outcome_count c WHERE c.dag_run_id = r.dag_run_id)
UNION ALL
SELECT q.dag_run_id, 'ledger', q.status, NULL, count(*)
  FROM mailtrace.resend_request q
 WHERE q.dag_run_id = ANY (%(run_ids)s)
 GROUP BY q.dag_run_id, q.status
