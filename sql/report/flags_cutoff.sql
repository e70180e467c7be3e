-- Where a report's "newly flagged" window may end: flags recorded before this instant are all committed
-- and visible to any later transaction. flag_history.recorded_at is its writer's transaction start
-- (now()), and a flags run may commit well after that; taking the start of the oldest transaction still
-- open in this database (or our own start, if earlier) leaves such a flag to the next report instead of
-- losing it between two. Sessions of other roles show no xact_start without pg_read_all_stats; run the
-- report as the role that writes the flags.
SELECT least(now(), min(a.xact_start)) AS flags_cutoff
  FROM pg_stat_activity AS a
 WHERE a.datname = current_database()
   AND a.pid <> pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND a.xact_start IS NOT NULL
