-- Delivery page: the latest failed-notification reports (one manifest row per S3 object).
SELECT m.id,
       m.bucket,
       m.s3_key,
       m.period_kind,
       m.period_start,
       m.period_end,
       m.period_timezone,
       m.period_label,
       m.row_count,
       m.byte_count,
       m.built_at,
       m.delivery,
       m.sent_at,
       coalesce(cardinality(m.recipients), 0) AS recipient_count
  FROM mailtrace.report_manifest m
 WHERE m.period_kind = ANY (%(kinds)s)
 ORDER BY m.period_start DESC, m.built_at DESC, m.id DESC
 LIMIT %(limit)s
