-- The subjects a flags run looks at. Parameters: full (boolean: every subject), since (timestamptz:
-- the last run's start minus the overlap; NULL when full).
INSERT INTO pg_temp.flag_scope (subject_type, subject_id)
SELECT subject_type, subject_id FROM mailtrace.contact WHERE %(full)s
UNION
SELECT subject_type, subject_id FROM mailtrace.address_flag WHERE %(full)s
UNION
-- subjects whose current address got a notification whose verdict reconcile changed (it stamps
-- delivery_updated_at = now() on every change), whichever subject that notification was about
SELECT c.subject_type, c.subject_id
  FROM mailtrace.notification_event e
  JOIN mailtrace.contact c ON lower(btrim(c.email)) = lower(btrim(e.recipient_email))
 WHERE NOT %(full)s AND e.delivery_updated_at > %(since)s
UNION
SELECT subject_type, subject_id FROM mailtrace.contact
 WHERE NOT %(full)s AND updated_at > %(since)s
UNION
-- Flags whose contact changed or vanished, whatever its updated_at says: cheap (flags are few) and it
-- makes clearing on a contact change independent of how the application stamps updated_at.
SELECT f.subject_type, f.subject_id
  FROM mailtrace.address_flag f
  LEFT JOIN mailtrace.contact c USING (subject_type, subject_id)
 WHERE NOT %(full)s AND (c.email IS NULL OR lower(btrim(c.email)) <> f.email);
