-- The events whose verdict may change in this run, as the log has them, with their references in matched
-- form (mailtrace.reference_key(); a client reference only where the log has no provider reference, the one
-- case it is matched by), and for SES whether the provider ever said anything about the message (any event,
-- any recipient, even unmapped). Affected are:
-- * rows the application logged since the last run (with an overlap): new sends, failed sends;
-- * those matched by provider observations that arrived since the last run: by provider reference, or by
--   client reference when the log has no provider reference; each either on the log's own column (the
--   provider side is stored normalised, so an equal log value is matched through the application's index)
--   or through mailtrace.event_reference_alias (log values that are not in normal form);
-- * events with a look-up outcome recorded since the last run (evidence for not_at_provider);
-- * SES sends that have just been silent for the whole SES grace period;
-- * in a catch-up run, every event still without a verdict that could get one (a failed send of any age,
--   a send inside the open window), whatever its timestamps say;
-- * events whose alias changed in this run (02_aliases.sql).
-- Restricting to this delta keeps the cost of a run proportional to new data, not to the history.
-- The rows logged since the last run are each taken once as they are read: event_id is unique in the log
-- (CONTRACT.md §1; mailtrace's own sends are logged as 'resend:…'), so they need no de-duplication. Only the
-- other reasons, for the events not among those rows, are de-duplicated and looked up in the log again. The
-- recent rows of a first run or of a large load so go straight into the table in parallel workers, instead
-- of through a de-duplication of every reason in one process and a second read of the log (1,000,000
-- events: 4.3 s -> 2.0 s for what were two statements, medians of four and three runs).
-- Those recent rows come in two arms: only SES events ask the history whether it heard of them (an index
-- probe each in a small run, one hashed scan of the SES history in a large one). With that question on
-- every row the planner left the reference keys to the leader alone; the other rows are few, so their arm
-- asks it of each. The arms repeat one column list because a shared CTE would be materialised, in one
-- process.
-- The run's work tables (01_alias_candidates.sql, this one, 05) are UNLOGGED tables of this transaction, not
-- temporary tables, so that reading them can use parallel workers (reconcile.py); this one is analysed, so
-- the verdict is planned for the rows really affected (index look-ups into the history for a small run, hash
-- joins for a large one) rather than for a guess. 09_drop_work_tables.sql drops them.
CREATE UNLOGGED TABLE mailtrace.reconcile_events AS
SELECT e.event_id, e.provider, e.local_status, e.sent_at,
       lower(btrim(e.recipient_email)) AS recipient_address,
       mailtrace.reference_key(e.provider, e.provider_reference) AS provider_reference_key,
       CASE WHEN e.provider_reference IS NULL
            THEN mailtrace.client_reference_key(e.client_reference) END AS client_reference_key,
       false AS ses_heard_of
  FROM mailtrace.event_log e
 WHERE e.sent_at >= %(log_since)s
   AND e.provider IS DISTINCT FROM 'ses'
UNION ALL
SELECT e.event_id, e.provider, e.local_status, e.sent_at,
       lower(btrim(e.recipient_email)) AS recipient_address,
       mailtrace.reference_key(e.provider, e.provider_reference) AS provider_reference_key,
       CASE WHEN e.provider_reference IS NULL
            THEN mailtrace.client_reference_key(e.client_reference) END AS client_reference_key,
       EXISTS (SELECT 1
                 FROM mailtrace.provider_event p
                WHERE p.provider = 'ses'
                  AND p.provider_reference = mailtrace.reference_key(e.provider, e.provider_reference))
  FROM mailtrace.event_log e
 WHERE e.sent_at >= %(log_since)s
   AND e.provider = 'ses'
UNION ALL
SELECT e.event_id, e.provider, e.local_status, e.sent_at,
       lower(btrim(e.recipient_email)) AS recipient_address,
       mailtrace.reference_key(e.provider, e.provider_reference) AS provider_reference_key,
       CASE WHEN e.provider_reference IS NULL
            THEN mailtrace.client_reference_key(e.client_reference) END AS client_reference_key,
       CASE WHEN e.provider = 'ses'
            THEN EXISTS (SELECT 1
                           FROM mailtrace.provider_event p
                          WHERE p.provider = 'ses'
                            AND p.provider_reference = mailtrace.reference_key(e.provider, e.provider_reference))
            ELSE false END
  FROM (
        -- the arms that read the log leave out its recent rows at once
        SELECT e.event_id
          FROM mailtrace.provider_event p
          JOIN mailtrace.event_log e ON e.provider = p.provider AND e.provider_reference = p.provider_reference
         WHERE p.id > %(cursor)s AND p.id <= %(high_water)s
           AND (e.sent_at < %(log_since)s OR e.sent_at IS NULL)
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
           AND (e.sent_at < %(log_since)s OR e.sent_at IS NULL)
        UNION
        SELECT a.event_id
          FROM mailtrace.provider_event p
          JOIN mailtrace.event_reference_alias a
            ON a.provider = p.provider AND a.client_reference_key = p.client_reference
         WHERE p.id > %(cursor)s AND p.id <= %(high_water)s AND p.client_reference IS NOT NULL
        UNION
        -- the log's own other reasons in one pass over it: through its sent_at index in a steady run (the
        -- catch-up arm is planned away when false)
        SELECT e.event_id
          FROM mailtrace.event_log e
         WHERE ((e.provider = 'ses' AND e.local_status = 'SENT'
                 AND e.sent_at >= %(ses_line_since)s AND e.sent_at < %(ses_silent_before)s)
                OR (%(catch_up)s
                    AND (e.local_status = 'FAILED' OR (e.local_status = 'SENT' AND e.sent_at >= %(open_since)s))
                    AND NOT EXISTS (SELECT 1 FROM mailtrace.delivery d WHERE d.event_id = e.event_id)))
           AND (e.sent_at < %(log_since)s OR e.sent_at IS NULL)
        UNION
        SELECT l.event_id
          FROM mailtrace.provider_lookup l
         WHERE l.last_checked_at >= %(lookups_since)s
        UNION
        SELECT event_id FROM pg_temp.reconcile_alias_changed
       ) AS older
  JOIN mailtrace.event_log e ON e.event_id = older.event_id
 -- the alias, look-up and alias-changed arms may name recent events too: those were taken above
 WHERE (e.sent_at < %(log_since)s OR e.sent_at IS NULL)
