-- A report that could not be emailed (the mail server down through every retry) stays owed until it is:
-- the next weekly run's catch-up task emails it with a line saying it is late. Reports built without an
-- email on purpose (the weeks before the latest on a first deployment) are not owed and say why.
-- email_error keeps the last sending error, masked, for the late line and for whoever looks.
-- Reports built before this migration are not owed: whether they were meant to be emailed is unknown.

ALTER TABLE mailtrace.report_manifest
    ADD COLUMN IF NOT EXISTS email_owed       boolean     NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS not_emailed_note text,
    ADD COLUMN IF NOT EXISTS email_error      text,
    ADD COLUMN IF NOT EXISTS email_failed_at  timestamptz;

CREATE INDEX IF NOT EXISTS report_manifest_owed_idx
    ON mailtrace.report_manifest (period_start) WHERE email_owed;
