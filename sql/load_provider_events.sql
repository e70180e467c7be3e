-- Move one staged chunk of provider observations into the append-only history.
-- References are stored in the form they are matched in (mailtrace.reference_key(): no surrounding spaces,
-- Notify's UUIDs in lower case), so reconcile compares them to the log's values as they are.
-- Re-observed statuses (overlapping windows, re-runs, SQS redelivery) hit the unique key and add nothing.
INSERT INTO mailtrace.provider_event
    (provider, provider_reference, recipient_email, client_reference, raw_status, delivery_status,
     failure_reason, detail, event_at, source)
SELECT provider, coalesce(mailtrace.reference_key(provider, provider_reference), ''), recipient_email,
       mailtrace.client_reference_key(client_reference), raw_status, delivery_status,
       failure_reason, detail, event_at, source
FROM provider_event_stage
ORDER BY event_at
ON CONFLICT (provider, provider_reference, recipient_email, raw_status, event_at) DO NOTHING
