-- sent_* describe the content the examiners last received (the report, or a correction of it): the
-- manifest as it was read before sending, so a rebuild racing the email is still mailed as a correction.
UPDATE mailtrace.report_manifest
SET recipients = %(recipients)s, delivery = %(delivery)s, message_id = %(message_id)s, sent_at = now(),
    sent_run_id = %(run_id)s, sent_checksum = %(checksum)s, sent_row_count = %(row_count)s,
    sent_summary = %(summary)s, sent_kind = %(kind)s, email_owed = false
WHERE bucket = %(bucket)s AND s3_key = %(s3_key)s
