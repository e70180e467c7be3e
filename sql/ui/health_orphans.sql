-- Delivery page, health: provider notifications that match no event in the log, per provider.
SELECT v.provider,
       count(o.provider_reference) AS count,
       max(o.last_seen_at)         AS newest_at
  FROM (VALUES ('gc_notify'), ('ses')) AS v (provider)
  LEFT JOIN mailtrace.orphan_notification o ON o.provider = v.provider
 GROUP BY v.provider
 ORDER BY v.provider
