-- Delivery page: the resend runs of some incidents, newest first, with what was asked for (never the
-- inline list itself: only whether there was one).
SELECT r.incident_id,
       r.dag_run_id,
       r.dry_run,
       r.planned_at,
       r.finished_at,
       r.rows_read,
       r.chunks,
       r.outcome_uri,
       r.params ->> 'id_type' AS id_type,
       r.params ->> 'template' AS template,
       r.params ->> 'language' AS language,
       coalesce((r.params ->> 'force_resend')::boolean, false) AS force_resend,
       r.params ->> 'ids_s3_uri' AS ids_s3_uri,
       coalesce(r.params ->> 'inline_ids', '') <> '' AS inline_ids
  FROM mailtrace.resend_run r
 WHERE r.incident_id = ANY (%(incidents)s)
 ORDER BY r.incident_id, r.planned_at DESC, r.dag_run_id
