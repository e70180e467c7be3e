-- Neighbours of a weekly report in the chain of "newly flagged" windows. Parameters: period_start.
-- previous_until: where the latest earlier weekly report's window ended (this one starts there);
-- next_since: where the earliest later weekly report's window starts (a week built late, out of order,
-- must not overlap it). Null when there is no such report. A row without a window (not written by
-- build_report) counts as [period_start, built_at).
SELECT (SELECT max(coalesce(m.flags_until, greatest(m.period_start, m.built_at)))
          FROM mailtrace.report_manifest AS m
         WHERE m.period_kind = 'weekly'
           AND m.period_start < %(period_start)s) AS previous_until,
       (SELECT min(coalesce(m.flags_since, m.period_start))
          FROM mailtrace.report_manifest AS m
         WHERE m.period_kind = 'weekly'
           AND m.period_start > %(period_start)s) AS next_since
