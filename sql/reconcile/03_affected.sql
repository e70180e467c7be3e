-- The events whose verdict may change in this run:
-- * those matched by provider observations that arrived since the last run: by provider reference, or by
--   client reference when the log has no provider reference; each either on the log's own column (the
--   provider side is stored normalised, so an equal log value is matched through the application's index)
--   or through mailtrace.event_reference_alias (log values that are not in normal form);
-- * rows the application logged since the last run (with an overlap): new sends, failed sends;
-- * events with a look-up outcome recorded since the last run (evidence for not_at_provider);
-- * SES sends that have just been silent for the whole SES grace period;
-- * in a catch-up run, every event still without a verdict that could get one (a failed send of any age,
--   a send inside the open window), whatever its timestamps say;
-- * events whose alias changed in this run (02_aliases.sql).
-- Restricting to this delta keeps the cost of a run proportional to new data, not to the history. A plain
-- table (UNION removes duplicates), filled in one go: cheaper than inserting into a key one row at a time.
-- The run's work tables (01_alias_candidates.sql, this one, 04, 05) are UNLOGGED tables of this transaction,
-- not temporary tables, so that reading them can use parallel workers (reconcile.py);
-- 09_drop_work_tables.sql drops them.
CREATE UNLOGGED TABLE mailtrace.reconcile_affected AS
SELECT e.event_id
  FROM mailtrace.provider_event p
  JOIN mailtrace.event_log e ON e.provider = p.provider AND e.provider_reference = p.provider_reference
 WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
UNION
SELECT a.event_id
  FROM mailtrace.provider_event p
  JOIN mailtrace.event_reference_alias a
    ON a.provider = p.provider AND a.provider_reference_key = p.provider_reference
 WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
UNION
SELECT e.event_id
  FROM mailtrace.provider_event p
  JOIN mailtrace.event_log e
    ON e.provider = p.provider AND e.client_reference = p.client_reference AND e.provider_reference IS NULL
 WHERE p.id > %(cursor)s AND p.id <= %(high_water)s AND p.client_reference IS NOT NULL
UNION
SELECT a.event_id
  FROM mailtrace.provider_event p
  JOIN mailtrace.event_reference_alias a
    ON a.provider = p.provider AND a.client_reference_key = p.client_reference
 WHERE p.id > %(cursor)s AND p.id <= %(high_water)s AND p.client_reference IS NOT NULL
UNION
-- the log's own three reasons in one pass over it: through its sent_at index in a steady run (the catch-up
-- arm is planned away when false), one scan in a catch-up run instead of three sets to de-duplicate
SELECT e.event_id
  FROM mailtrace.event_log e
 WHERE e.sent_at >= %(log_since)s
    OR (e.provider = 'ses' AND e.local_status = 'SENT'
        AND e.sent_at >= %(ses_line_since)s AND e.sent_at < %(ses_silent_before)s)
    OR (%(catch_up)s
        AND (e.local_status = 'FAILED' OR (e.local_status = 'SENT' AND e.sent_at >= %(open_since)s))
        AND NOT EXISTS (SELECT 1 FROM mailtrace.delivery d WHERE d.event_id = e.event_id))
UNION
SELECT l.event_id
  FROM mailtrace.provider_lookup l
 WHERE l.last_checked_at >= %(lookups_since)s
UNION
SELECT event_id FROM pg_temp.reconcile_alias_changed
