-- The open "unmapped Notify status" warnings whose condition no longer holds: no stored GC Notify status
-- of that raw value is still holding a notification back from a verdict (every such row has a later or
-- equal mapped status of the same notification). Absence from one walk proves nothing: a walk covers only
-- recent notifications. Parameter: kind.
SELECT w.subject
  FROM mailtrace.pipeline_warning AS w
 WHERE w.kind = %(kind)s
   AND w.resolved_at IS NULL
   AND NOT EXISTS (
        SELECT 1
          FROM mailtrace.provider_event AS held
         WHERE held.provider = 'gc_notify'
           AND held.delivery_status IS NULL
           AND held.raw_status = w.subject
           AND NOT EXISTS (
                SELECT 1
                  FROM mailtrace.provider_event AS later
                 WHERE later.provider = held.provider
                   AND later.provider_reference = held.provider_reference
                   AND later.delivery_status IS NOT NULL
                   AND later.event_at >= held.event_at))
