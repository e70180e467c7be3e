-- Delivery page: where one report's CSV is stored.
SELECT m.bucket, m.s3_key
  FROM mailtrace.report_manifest m
 WHERE m.id = %(report_id)s
