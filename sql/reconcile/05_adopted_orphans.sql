-- An orphan stops being one when the application's event row for it appears (it may commit
-- after the provider already reported on the email).
DELETE FROM mailtrace.orphan_notification o
WHERE EXISTS (
          SELECT 1 FROM mailtrace.notification_event e
          WHERE e.provider = o.provider AND e.provider_reference = o.provider_reference)
   OR EXISTS (
          SELECT 1 FROM mailtrace.notification_event e
          WHERE o.client_reference IS NOT NULL AND e.provider = o.provider
            AND e.provider_reference IS NULL AND e.client_reference = o.client_reference)
