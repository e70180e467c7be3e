-- Events whose alias changed in this run (02_aliases.sql); 03_events.sql adds them to the affected ones.
CREATE TEMP TABLE reconcile_alias_changed (event_id text NOT NULL) ON COMMIT DROP
