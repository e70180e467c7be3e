-- High-water marks for the next incremental flags run: the newest verdict change and the newest
-- contact change. Read before flags_apply.sql, so anything committed in between is seen next time.
SELECT (SELECT max(delivery_updated_at) FROM mailtrace.notification_event) AS events_cursor,
       (SELECT max(updated_at) FROM mailtrace.contact) AS contacts_cursor;
