-- One warning a run met (see migration 015): a new row, or the existing one seen again. A warning that
-- was resolved and is met again starts over. Parameters: kind, subject, message.
INSERT INTO mailtrace.pipeline_warning AS w (kind, subject, message)
VALUES (%(kind)s, %(subject)s, %(message)s)
ON CONFLICT (kind, subject) DO UPDATE
   SET message       = EXCLUDED.message,
       last_seen_at  = now(),
       first_seen_at = CASE WHEN w.resolved_at IS NULL THEN w.first_seen_at ELSE now() END,
       run_count     = CASE WHEN w.resolved_at IS NULL THEN w.run_count + 1 ELSE 1 END,
       resolved_at   = NULL
