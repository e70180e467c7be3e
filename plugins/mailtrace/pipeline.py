"""Task entry points of the delivery-status DAGs: read settings, open connections, call the logic.

Kept apart from the logic modules so those stay plain functions of (connection, client, values)
that tests call directly, while DAG files stay a table of contents.
"""

from __future__ import annotations

from datetime import timedelta

from mailtrace.settings import setting
from mailtrace.warehouse import apply_migrations, connect


def _grace() -> timedelta:
    return timedelta(minutes=setting("not_at_provider_grace_minutes"))


def _ses_grace() -> timedelta:
    return timedelta(hours=setting("ses_not_at_provider_grace_hours"))


def _list_overlap() -> timedelta:
    return timedelta(minutes=setting("notify_list_overlap_minutes"))


def run_migrations() -> list[str]:
    with connect() as conn:
        return apply_migrations(conn)


def _with_notify(step, **settings) -> dict:
    """Run a Notify step with a warehouse connection and a Notify client from its Airflow connection."""
    from mailtrace.providers.gc_notify import NotifyClient

    with connect() as conn:
        return step(conn, NotifyClient.from_connection(), **settings)


def run_notify_list_extract() -> dict:
    from mailtrace.notify_extract import extract_list

    return _with_notify(
        extract_list,
        overlap=_list_overlap(),
        initial_lookback=timedelta(days=setting("notify_initial_lookback_days")),
        sweep_every=timedelta(hours=setting("notify_late_sweep_every_hours")),
        sweep_window=timedelta(days=setting("notify_late_sweep_days")),
    )


def run_notify_lookups() -> dict:
    from mailtrace.notify_extract import lookup_open_events

    return _with_notify(
        lookup_open_events,
        grace=_grace(),
        overlap=_list_overlap(),
        max_lookups=setting("notify_max_lookups_per_run"),
    )


def run_reconcile() -> dict:
    from mailtrace.reconcile import reconcile

    with connect() as conn:
        return reconcile(conn, grace=_grace(), ses_grace=_ses_grace())


def run_flag_update() -> dict:
    from mailtrace.flags import threshold_from_settings, update_flags

    with connect() as conn:
        return update_flags(conn, soft_failure_threshold=threshold_from_settings())


def run_deliverability_check(provider: str) -> dict:
    """Fail (after emailing `mailtrace_alert_emails`) when a threshold is breached for `provider`."""
    from mailtrace.failure_alert import email_alert
    from mailtrace.monitoring import DeliverabilityAlert, Thresholds, alert_text, check_deliverability

    thresholds = Thresholds(
        delivery_rate_floor=setting("alert_delivery_rate_floor"),
        not_at_provider_max=setting("alert_not_at_provider_max"),
        min_sample=setting("alert_min_sample"),
        grace=_grace(),
    )
    with connect() as conn:
        result = check_deliverability(conn, thresholds, provider=provider)
    if not result["problems"]:
        return result
    message = alert_text(result)
    email_alert(f"mailtrace: email delivery through {provider} needs attention", message)
    raise DeliverabilityAlert(message)
