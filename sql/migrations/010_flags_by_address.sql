-- Invalid-address flags judge the address, not one subject's use of it (CONTRACT.md §3: a row disappears
-- when "a later notification to that address is delivered"): a bounce on one registration's notice flags
-- every subject whose contact is that address, and a delivery to it for any subject clears them all.
-- Both sides are matched normalised (lower(btrim())); these indexes keep the incremental run's look-ups
-- (events to an address, contacts with an address) cheap however long the log grows.
CREATE INDEX IF NOT EXISTS notification_event_recipient_address_idx
    ON mailtrace.notification_event (lower(btrim(recipient_email)));
CREATE INDEX IF NOT EXISTS contact_address_idx
    ON mailtrace.contact (lower(btrim(email)));
