-- Delivery page, health: one provider's newest receipt (by insertion order, the primary key read backwards)
-- and its newest send (the event log's sent_at index read backwards).
SELECT (SELECT p.observed_at
          FROM mailtrace.provider_event p
         WHERE p.provider = %(provider)s
         ORDER BY p.id DESC
         LIMIT 1) AS newest_receipt_at,
       (SELECT e.sent_at
          FROM mailtrace.event_log e
         WHERE e.provider = %(provider)s
           AND e.local_status = 'SENT'
         ORDER BY e.sent_at DESC
         LIMIT 1) AS newest_send_at
