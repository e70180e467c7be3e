-- An orphan stops being one when the application's event row for it appears (it may commit
-- after the provider already reported on the email).
DELETE FROM mailtrace.orphan_notification o
WHERE EXISTS (
          SELECT 1 FROM mailtrace.event_log e
          WHERE e.provider = o.provider AND e.provider_reference = o.provider_reference)
   OR EXISTS (
          SELECT 1 FROM mailtrace.event_reference_alias a
          WHERE a.provider = o.provider AND a.provider_reference_key = o.provider_reference)
   OR EXISTS (
          SELECT 1 FROM mailtrace.event_log e
          WHERE o.client_reference IS NOT NULL AND e.provider = o.provider
            AND e.provider_reference IS NULL AND e.client_reference = o.client_reference)
   OR EXISTS (
          SELECT 1 FROM mailtrace.event_reference_alias a
          WHERE o.client_reference IS NOT NULL AND a.provider = o.provider
            AND a.client_reference_key = o.client_reference)
