-- SES queue messages that could not be parsed (issue 4). Kept whole, with the reason, so a poison
-- message leaves the queue (it cannot block it) without being lost; an operator can read, fix and
-- replay it. One row per SQS message: a redelivered poison message adds nothing.
CREATE TABLE IF NOT EXISTS mailtrace.ses_dead_letter (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  text        NOT NULL UNIQUE,
    body        text        NOT NULL,
    error       text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
