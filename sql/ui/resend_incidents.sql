-- Delivery page: incidents with resend runs (dry runs included), newest first by their latest run; one page.
SELECT r.incident_id,
       max(r.planned_at) AS last_planned_at,
       count(*) AS run_count,
       count(*) OVER () AS total
  FROM mailtrace.resend_run r
 WHERE (%(incident_id)s::text IS NULL OR r.incident_id = %(incident_id)s)
 GROUP BY r.incident_id
 ORDER BY max(r.planned_at) DESC, r.incident_id
 LIMIT %(limit)s OFFSET %(offset)s
