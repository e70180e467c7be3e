-- The subjects a flags run looks at. Parameters: full (boolean: every subject), since (timestamptz:
-- the last run's start minus the overlap; NULL when full).
INSERT INTO pg_temp.flag_scope (subject_type, subject_id)
SELECT subject_type, subject_id FROM mailtrace.contact WHERE %(full)s
UNION
SELECT subject_type, subject_id FROM mailtrace.address_flag WHERE %(full)s
UNION
-- subjects whose current address got a notification whose verdict reconcile changed (it stamps
-- delivery_updated_at = now() on every change), whichever subject that notification was about.
-- mailtrace does not index the application's contact by normalised address, so when verdicts changed this
-- reads the contact relation once (a hash join), not once per address.
SELECT c.subject_type, c.subject_id
  FROM mailtrace.delivery d
  JOIN mailtrace.contact c ON lower(btrim(c.email)) = d.recipient_address
 WHERE NOT %(full)s AND d.delivery_updated_at > %(since)s
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
