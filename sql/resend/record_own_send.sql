INSERT INTO mailtrace.own_notification_event
    (event_id, subject_type, subject_id, notification_type, recipient_email, provider,
     provider_reference, client_reference, sent_at, local_status)
VALUES (%(reference)s, %(subject_type)s, %(subject_id)s, %(notification_type)s, %(email)s,
        %(provider)s, %(provider_reference)s, %(reference)s, %(sent_at)s, 'SENT')
ON CONFLICT (event_id) DO NOTHING
