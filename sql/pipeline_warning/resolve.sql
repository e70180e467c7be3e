-- The open warnings of one kind that a check looked for and no longer finds. Parameters: kind, checked
-- (text[] of the subjects the check covers; NULL: every subject of the kind), found (text[] it found).
UPDATE mailtrace.pipeline_warning
   SET resolved_at = now()
 WHERE kind = %(kind)s
   AND resolved_at IS NULL
   AND (%(checked)s::text[] IS NULL OR subject = ANY (%(checked)s::text[]))
   AND NOT (subject = ANY (%(found)s::text[]))
