-- Record the outcome of a batch of id look-ups (found or not) for reconcile's not_at_provider rule.
INSERT INTO mailtrace.provider_lookup AS l (event_id, last_checked_at, found)
SELECT checked.event_id, %(checked_at)s, checked.found
FROM unnest(%(event_ids)s::text[], %(found)s::boolean[]) AS checked (event_id, found)
ON CONFLICT (event_id) DO UPDATE
SET last_checked_at = EXCLUDED.last_checked_at,
    found = EXCLUDED.found,
    checks = l.checks + 1
