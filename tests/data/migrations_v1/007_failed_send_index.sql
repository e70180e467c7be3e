-- Reconcile gives every app-side failed send (local_status FAILED) a verdict however old it is;
-- this index finds the ones still without one without scanning the history.
CREATE INDEX IF NOT EXISTS notification_event_failed_unjudged_idx
    ON mailtrace.notification_event (event_id)
    WHERE delivery_status IS NULL AND local_status = 'FAILED';
