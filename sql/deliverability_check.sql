-- Health of one provider's last day of sends that are old enough to have a verdict (sent before now - grace).
-- Per provider, so one provider's feed going silent is not hidden by another's receipts.
SELECT count(*)                                                                          AS sent,
       count(*) FILTER (WHERE delivery_status = 'delivered')                             AS delivered,
       count(*) FILTER (WHERE delivery_status IS NOT NULL AND delivery_status <> 'pending') AS final,
       count(*) FILTER (WHERE delivery_status = 'not_at_provider')                       AS not_at_provider,
       -- not_at_provider is mailtrace's inference from silence, not a receipt
       count(*) FILTER (WHERE local_status = 'SENT'
                          AND (delivery_status IS NULL OR delivery_status = 'not_at_provider')) AS without_receipt,
       count(*) FILTER (WHERE local_status = 'SENT')                                     AS sent_ok
FROM mailtrace.notification_status
WHERE provider = %(provider)s
  AND sent_at >= %(window_start)s
  AND sent_at < %(window_end)s
  AND local_status <> 'QUEUED'
