-- Move one staged chunk of provider observations into the append-only history.
-- Re-observed statuses (overlapping windows, re-runs, SQS redelivery) hit the unique key and add nothing.
INSERT INTO mailtrace.provider_event
    (provider, provider_reference, recipient_email, client_reference, raw_status, delivery_status,
     failure_reason, detail, event_at, source)
SELECT provider, provider_reference, recipient_email, client_reference, raw_status, delivery_status,
       failure_reason, detail, event_at, source
FROM provider_event_stage
ORDER BY event_at
ON CONFLICT (provider, provider_reference, recipient_email, raw_status, event_at) DO NOTHING
