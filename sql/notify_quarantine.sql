-- Set one Notify notification aside, or count another sighting of one already set aside (Notify keeps
-- it for days and every walk over its time meets it again). Returns whether the row is new.
INSERT INTO mailtrace.notify_quarantine
    (notification_id, source, reason, raw_json, raw_sha256, first_seen_at, last_seen_at)
VALUES (%(notification_id)s, %(source)s, %(reason)s, %(raw_json)s, %(raw_sha256)s, %(seen_at)s, %(seen_at)s)
ON CONFLICT (raw_sha256) DO UPDATE
    SET last_seen_at = greatest(mailtrace.notify_quarantine.last_seen_at, EXCLUDED.last_seen_at),
        times_seen = mailtrace.notify_quarantine.times_seen + 1,
        reason = EXCLUDED.reason
RETURNING (xmax = 0) AS inserted
