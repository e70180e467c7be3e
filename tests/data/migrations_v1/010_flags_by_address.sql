-- Invalid-address flags judge the address, not one subject's use of it (CONTRACT.md §3: a row disappears
-- when "a later notification to that address is delivered"): a bounce on one registration's notice flags
-- every subject whose contact is that address, and a delivery to it for any subject clears them all.
-- Both sides are matched normalised (lower(btrim())); these indexes keep the incremental run's look-ups
-- (events to an address, contacts with an address) cheap however long the log grows.
-- Migrations run in a transaction, so these are plain CREATE INDEX: on a large event log the build holds
-- the application's inserts until it ends. Such a deployment can build them beforehand with CREATE INDEX
-- CONCURRENTLY under the same names; this migration then finds them and does nothing.
CREATE INDEX IF NOT EXISTS notification_event_recipient_address_idx
    ON mailtrace.notification_event (lower(btrim(recipient_email)));
CREATE INDEX IF NOT EXISTS contact_address_idx
    ON mailtrace.contact (lower(btrim(email)));
