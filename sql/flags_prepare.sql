-- Working tables of one flags run (dropped at commit). Materialised and analysed between the steps so
-- the planner sees real row counts: a few subjects in an incremental run, every contact in a rebuild.
CREATE TEMP TABLE flag_scope (
    subject_type text NOT NULL,
    subject_id   text NOT NULL,
    PRIMARY KEY (subject_type, subject_id)
) ON COMMIT DROP;

-- One row per subject in scope that has a contact: what the rule says about its current address.
CREATE TEMP TABLE flag_verdict (
    subject_type         text NOT NULL,
    subject_id           text NOT NULL,
    email                text NOT NULL,
    contact_updated_at   timestamptz NOT NULL,
    -- set when the address is flagged: sent_at, cause, event and reason of the failure that flagged it
    flagged_at           timestamptz,
    cause                text,
    start_event_id       text,
    start_failure_reason text,
    -- the failure the dashboard shows: the latest hard bounce, else the latest soft failure
    failure_reason       text,
    last_failed_event_id text,
    -- the latest delivery to the address (explains a clear)
    delivered_at         timestamptz,
    delivered_event_id   text,
    PRIMARY KEY (subject_type, subject_id)
) ON COMMIT DROP;
