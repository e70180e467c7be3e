"""Alert the data engineers when a mailtrace task fails for good: by email and through Amazon SNS.

Without it a broken pipeline is silent: the deliverability check runs after the extract, so when the
extract fails (a revoked API key, a provider outage) the check never runs and nobody is told. Wired as
every DAG's `on_failure_callback`, so it runs once retries are exhausted, not on each retry.

Email (`mailtrace_alert_emails`, through `smtp_default`) cannot report its own failure: when the mail
server is what failed (a weekly report not emailed), that alert is lost too. So every alert is also
published to the SNS topic in `mailtrace_alert_sns_topic_arn` (through `aws_default`), which does not
depend on SMTP; subscribe a pager, a chat hook or an on-call address to it. Each channel is tried
whatever happened to the other. The text is masked: error messages can quote addresses.
"""

from __future__ import annotations

import logging
from typing import Any

from mailtrace.privacy import mask_text

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"

# An exception message can be long (a whole SQL statement, a provider's HTML error page).
_MAX_ERROR_CHARS = 2000


class AlertAlreadySent(RuntimeError):
    """A failure whose task has emailed its own, more specific alert: no second email for it."""


def failure_text(context: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the alert for the failed task described by Airflow's callback `context`."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    error = str(context.get("exception") or "no exception recorded")
    if len(error) > _MAX_ERROR_CHARS:
        error = error[:_MAX_ERROR_CHARS] + " …"
    lines = [
        f"The task {dag_id}.{task_id} failed and will not be retried.",
        "",
        f"Run: {getattr(ti, 'run_id', '?')} (try {getattr(ti, 'try_number', '?')})",
        f"Error: {error}",
    ]
    log_url = getattr(ti, "log_url", None)
    if log_url:
        lines.append(f"Log: {log_url}")
    return f"mailtrace: {dag_id}.{task_id} failed", "\n".join(lines)


def email_alert(subject: str, text: str) -> None:
    """Send the alert by email (`mailtrace_alert_emails`) and to SNS (`mailtrace_alert_sns_topic_arn`).

    A channel with no Variable is skipped (logged). A channel that fails is logged and the other still
    tried; only when no configured channel took the alert does this raise, naming what failed.
    """
    subject, text = mask_text(subject), mask_text(text)
    failures = []
    delivered = 0
    for channel, send in (("email", _email), ("SNS", _publish_to_sns)):
        try:
            delivered += send(subject, text)
        except Exception as error:  # one channel down must not keep the alert from the other
            failures.append(f"{channel}: {type(error).__name__}: {mask_text(error)}"[:500])
            log.error("alert %r not sent by %s: %s", subject, channel, failures[-1])
    if failures and not delivered:
        raise RuntimeError(f"alert {subject!r} reached nobody: " + "; ".join(failures))


def _email(subject: str, text: str) -> int:
    from mailtrace.mailer import send_email
    from mailtrace.settings import setting

    recipients = setting("alert_emails")
    if not recipients:
        log.warning("no Variable mailtrace_alert_emails: alert %r not emailed", subject)
        return 0
    send_email(to=recipients, subject=subject, text=text)
    return 1


def _publish_to_sns(subject: str, text: str) -> int:
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    from mailtrace.settings import setting

    topic_arn = setting("alert_sns_topic_arn")
    if not topic_arn:
        log.info("no Variable mailtrace_alert_sns_topic_arn: alert %r not published to SNS", subject)
        return 0
    # SNS subjects: at most 100 characters, ASCII, one line.
    sns_subject = subject.encode("ascii", "replace").decode().replace("\n", " ")[:100]
    SnsHook(aws_conn_id=AWS_CONN_ID).publish_to_target(topic_arn, text, subject=sns_subject)
    return 1


def email_task_failure(context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), AlertAlreadySent):
        return
    email_alert(*failure_text(context))
