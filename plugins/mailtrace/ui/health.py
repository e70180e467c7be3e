"""Pipeline health for the Delivery page: is every part of the pipeline working, and since when not.

Each check says `green`, `amber` or `red` (or `idle` when there is nothing to judge, `unknown` when it could
not be read) with the figures behind it; the panel's level is the worst of them. The thresholds are the
defaults below (documented in the README's "Delivery page" section):

* a scheduled DAG is amber when its last successful run ended more than `DAG_AMBER_CADENCES` schedule
  intervals ago or its newest run failed, red after `DAG_RED_CADENCES` intervals or if it never succeeded;
  DAGs that only run when triggered are shown without a level;
* a provider's receipts are amber when nothing arrived for `RECEIPTS_AMBER` although something was sent
  through it since the newest receipt, red after `RECEIPTS_RED`;
* the deliverability check is red when it would alert now (same SQL and thresholds as the DAGs' check);
* set-aside items (SES dead letters, quarantined Notify notifications) are amber when any exist, red when
  one arrived within `SET_ASIDE_RECENT`; orphans are amber when any exist;
* each warning the pipeline's runs recorded and that still holds (`mailtrace.pipeline_warning`: a source
  index CONTRACT.md §1 asks for that the planner cannot use, a Notify status mailtrace does not map) is
  amber.

DAG runs are read from Airflow's metadata database through its ORM (the api-server that mounts this app
has it); Variables through Airflow's Variable model (environment, secrets backends, then the database).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from mailtrace.paths import read_sql
from mailtrace.pipeline_warnings import EVENT_KINDS, EVENT_SHOWN_FOR_DAYS
from mailtrace.settings import REGISTRY, VARIABLE_PREFIX, decoded, setting_from

log = logging.getLogger(__name__)

PROVIDERS = ("gc_notify", "ses")
# Scheduled DAGs and their schedule interval; the others run when someone triggers them.
DAG_CADENCE = {
    "mailtrace_notify_pipeline": timedelta(minutes=15),
    "mailtrace_ses_events": timedelta(minutes=10),
    "mailtrace_weekly_report": timedelta(days=7),
}
TRIGGERED_DAGS = ("mailtrace_resend", "mailtrace_resend_drop", "mailtrace_flags_rebuild")
# Triggered by events, not by a person watching the run: a failed newest run is red, or nobody learns of it.
UNATTENDED_DAGS = ("mailtrace_resend_drop",)
DAG_AMBER_CADENCES = 3
DAG_RED_CADENCES = 12
RECEIPTS_AMBER = timedelta(hours=1)
RECEIPTS_RED = timedelta(hours=6)
SET_ASIDE_RECENT = timedelta(hours=24)
NOTIFY_WATERMARK_STATE = "gc_notify_list_watermark"
LEVEL_ORDER = ("green", "idle", "unknown", "amber", "red")


def worst(levels: list[str]) -> str:
    known = [level for level in levels if level in LEVEL_ORDER]
    return max(known, key=LEVEL_ORDER.index) if known else "idle"


def _age(now: datetime, then: datetime | None) -> float | None:
    return round((now - then).total_seconds()) if then else None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# ---------------------------------------------------------------- Airflow side


def dag_health(now: datetime) -> list[dict[str, Any]]:
    """Per mailtrace DAG: its last successful run, its newest run's state and a level."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    dag_ids = [*DAG_CADENCE, *TRIGGERED_DAGS]
    with create_session() as session:
        successes = dict(
            session.execute(
                select(DagRun.dag_id, func.max(func.coalesce(DagRun.end_date, DagRun.start_date)))
                .where(DagRun.dag_id.in_(dag_ids), DagRun.state == "success")
                .group_by(DagRun.dag_id)
            ).all()
        )
        newest_after = (
            select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
            .where(DagRun.dag_id.in_(dag_ids))
            .group_by(DagRun.dag_id)
            .subquery()
        )
        newest = {
            dag_id: (state, run_after)
            for dag_id, state, run_after in session.execute(
                select(DagRun.dag_id, DagRun.state, DagRun.run_after).join(
                    newest_after,
                    (DagRun.dag_id == newest_after.c.dag_id) & (DagRun.run_after == newest_after.c.run_after),
                )
            ).all()
        }
    checks = []
    for dag_id in dag_ids:
        success = _aware(successes.get(dag_id))
        state, run_after = newest.get(dag_id, (None, None))
        cadence = DAG_CADENCE.get(dag_id)
        if cadence is None:
            level = "red" if dag_id in UNATTENDED_DAGS and state == "failed" else "idle"
        elif success is None or now - success > cadence * DAG_RED_CADENCES:
            level = "red"
        elif now - success > cadence * DAG_AMBER_CADENCES or state == "failed":
            level = "amber"
        else:
            level = "green"
        checks.append(
            {
                "dag_id": dag_id,
                "schedule_seconds": cadence.total_seconds() if cadence else None,
                "last_success_at": success,
                "last_success_age_seconds": _age(now, success),
                "newest_run_state": str(state) if state else None,
                "newest_run_at": _aware(run_after),
                "level": level,
            }
        )
    return checks


def variable(name: str) -> Any:
    """Setting `name` of the registry as the api-server sees its Variable; the registered default when
    the Variable is unset, unreadable here, or invalid (the page shows the pipeline's view, not an error).
    """
    try:
        from airflow.models.variable import Variable

        raw = Variable.get(VARIABLE_PREFIX + name, default_var=None)
        return setting_from(name, decoded(raw))
    except Exception as exc:  # no metadata DB in this process, or a bad value: the default applies
        log.info(
            "Variable %s%s not usable here (%s); using its default", VARIABLE_PREFIX, name, type(exc).__name__
        )
        return REGISTRY[name].default


# ---------------------------------------------------------------- warehouse side


def receipts_health(conn: psycopg.Connection, now: datetime) -> list[dict[str, Any]]:
    """Per provider: the newest receipt, whether anything was sent since, and the Notify list watermark."""
    checks = []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT value, updated_at FROM mailtrace.pipeline_state WHERE name = %s",
            (NOTIFY_WATERMARK_STATE,),
        )
        watermark = cur.fetchone()
        for provider in PROVIDERS:
            cur.execute(read_sql("ui/health_receipts.sql"), {"provider": provider})
            row = cur.fetchone()
            newest_receipt, newest_send = row["newest_receipt_at"], row["newest_send_at"]
            waiting = newest_send is not None and (newest_receipt is None or newest_send > newest_receipt)
            silent = (now - (newest_receipt or newest_send)) if waiting else None
            if newest_send is None and newest_receipt is None:
                level = "idle"
            elif silent is None or silent <= RECEIPTS_AMBER:
                level = "green"
            elif silent <= RECEIPTS_RED:
                level = "amber"
            else:
                level = "red"
            check = {
                "provider": provider,
                "newest_receipt_at": newest_receipt,
                "newest_receipt_age_seconds": _age(now, newest_receipt),
                "newest_send_at": newest_send,
                "sent_since_newest_receipt": waiting,
                "level": level,
            }
            if provider == "gc_notify":
                check["list_watermark"] = watermark["value"] if watermark else None
                check["list_watermark_updated_at"] = watermark["updated_at"] if watermark else None
                check["list_watermark_age_seconds"] = (
                    _age(now, watermark["updated_at"]) if watermark else None
                )
            checks.append(check)
    return checks


def deliverability_health(now: datetime) -> list[dict[str, Any]]:
    """The deliverability check as the DAGs would run it now, per provider (it stores no result)."""
    from mailtrace.monitoring import Thresholds, check_deliverability
    from mailtrace.warehouse import connect

    thresholds = Thresholds(
        delivery_rate_floor=variable("alert_delivery_rate_floor"),
        not_at_provider_max=variable("alert_not_at_provider_max"),
        min_sample=variable("alert_min_sample"),
        grace=timedelta(minutes=variable("not_at_provider_grace_minutes")),
    )
    checks = []
    # Its own read-only connection: the check commits, which the page's snapshot transaction refuses.
    with connect() as conn:
        conn.read_only = True
        for provider in PROVIDERS:
            result = check_deliverability(conn, thresholds, provider=provider, now=now)
            level = "red" if result["problems"] else ("idle" if not result["sent"] else "green")
            checks.append({**result, "level": level})
    return checks


def set_aside_health(conn: psycopg.Connection, now: datetime) -> dict[str, Any]:
    """Counts of what the pipeline set aside: SES dead letters, quarantined Notify items, orphans."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(read_sql("ui/health_set_aside.sql"))
        row = cur.fetchone()
        cur.execute(read_sql("ui/health_orphans.sql"))
        orphans = cur.fetchall()

    def level(count: int, newest: datetime | None) -> str:
        if not count:
            return "green"
        return "red" if newest and now - newest <= SET_ASIDE_RECENT else "amber"

    return {
        "ses_dead_letters": {
            "count": row["dead_letters"],
            "newest_at": row["dead_letter_newest_at"],
            "level": level(row["dead_letters"], row["dead_letter_newest_at"]),
        },
        "notify_quarantine": {
            "count": row["quarantined"],
            "newest_at": row["quarantine_newest_at"],
            "level": level(row["quarantined"], row["quarantine_newest_at"]),
        },
        "orphans": [{**o, "level": "amber" if o["count"] else "green"} for o in orphans],
    }


def recorded_warnings(conn: psycopg.Connection, now: datetime) -> list[dict[str, Any]]:
    """The warnings the pipeline's runs recorded and still hold (mailtrace.pipeline_warning), newest first:
    a source index CONTRACT.md §1 asks for that the planner cannot use, a Notify status not mapped, ...
    """
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            read_sql("ui/health_warnings.sql"),
            {"event_kinds": list(EVENT_KINDS), "shown_since": now - timedelta(days=EVENT_SHOWN_FOR_DAYS)},
        ).fetchall()
    return [
        {**row, "last_seen_age_seconds": _age(now, row["last_seen_at"]), "level": "amber"} for row in rows
    ]


def health(conn: psycopg.Connection, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    try:
        dags: list[dict[str, Any]] | None = dag_health(now)
        dags_error = None
    except Exception as exc:  # the panel still shows the warehouse side
        log.warning("DAG runs not readable from the metadata database: %s", type(exc).__name__)
        dags, dags_error = None, f"Airflow's run history could not be read ({type(exc).__name__})"
    receipts = receipts_health(conn, now)
    deliverability = deliverability_health(now)
    set_aside = set_aside_health(conn, now)
    warnings = recorded_warnings(conn, now)
    levels = [
        *(d["level"] for d in dags or []),
        "unknown" if dags_error else "green",
        *(r["level"] for r in receipts),
        *(d["level"] for d in deliverability),
        set_aside["ses_dead_letters"]["level"],
        set_aside["notify_quarantine"]["level"],
        *(o["level"] for o in set_aside["orphans"]),
        *(w["level"] for w in warnings),
    ]
    return {
        "checked_at": now,
        "level": worst(levels),
        "dags": dags,
        "dags_error": dags_error,
        "receipts": receipts,
        "deliverability": deliverability,
        "set_aside": set_aside,
        "warnings": warnings,
    }
