-- Delivery page, health: poison items set aside by the pipeline (SES dead letters, quarantined Notify items).
SELECT (SELECT count(*) FROM mailtrace.ses_dead_letter)              AS dead_letters,
       (SELECT max(d.received_at) FROM mailtrace.ses_dead_letter d)  AS dead_letter_newest_at,
       (SELECT count(*) FROM mailtrace.notify_quarantine)            AS quarantined,
       (SELECT max(q.last_seen_at) FROM mailtrace.notify_quarantine q) AS quarantine_newest_at
