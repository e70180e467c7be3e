-- Resend (mailtrace_resend), second version of the send ledger: when the last provider call started and
-- whether its outcome is still open, so that
-- * after an ambiguous GC Notify answer (5xx, timeout, garbled body) the row is sent again only when a
--   lookup by reference still finds nothing after a settle delay (Notify may store an accepted email
--   asynchronously), never straight away;
-- * an SES send (no lookup by reference exists) whose outcome is unknown is never repeated on its own:
--   the row becomes `unknown` and waits for a human (force_resend).
-- Idempotent: safe to apply to a warehouse that already has these objects.

ALTER TABLE mailtrace.resend_request
    -- When the newest provider send call for the row started (database clock).
    ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz,
    -- True from just before a send call until its outcome is known for sure (recorded sent, refused,
    -- or certainly not accepted such as a 429). Still true at the next attempt = the call may have
    -- been accepted without being recorded.
    ADD COLUMN IF NOT EXISTS attempt_open boolean NOT NULL DEFAULT false;

-- Rows left claimed after a call by the previous version: assume the call may have been accepted.
UPDATE mailtrace.resend_request
SET attempt_open = true, last_attempt_at = updated_at
WHERE status = 'claimed' AND attempts > 0 AND last_attempt_at IS NULL;

-- `unknown`: a call was made, no provider id was recorded, and the provider cannot be asked (SES).
ALTER TABLE mailtrace.resend_request DROP CONSTRAINT IF EXISTS resend_request_status_check;
ALTER TABLE mailtrace.resend_request ADD CONSTRAINT resend_request_status_check
    CHECK (status IN ('claimed', 'sent', 'failed', 'unknown'));
ALTER TABLE mailtrace.resend_request DROP CONSTRAINT IF EXISTS resend_request_provider_check;
ALTER TABLE mailtrace.resend_request ADD CONSTRAINT resend_request_provider_check
    CHECK (provider IN ('gc_notify', 'ses'));

ALTER TABLE mailtrace.resend_run ADD COLUMN IF NOT EXISTS unknown integer;
