"""Email the data engineers (`mailtrace_alert_emails`) when a mailtrace task fails for good.

Without it a broken pipeline is silent: the deliverability check runs after the extract, so when the
extract fails (a revoked API key, a provider outage) the check never runs and nobody is told. Wired as
every DAG's `on_failure_callback`, so it runs once retries are exhausted, not on each retry.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

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
    """Email `text` to `mailtrace_alert_emails`; where that Variable names nobody, only log it."""
    from mailtrace.mailer import send_email
    from mailtrace.settings import get_email_list

    recipients = get_email_list("alert_emails")
    if not recipients:
        log.warning("no Variable mailtrace_alert_emails: alert %r not emailed", subject)
        return
    send_email(to=recipients, subject=subject, text=text)


def email_task_failure(context: dict[str, Any]) -> None:
    if isinstance(context.get("exception"), AlertAlreadySent):
        return
    email_alert(*failure_text(context))
