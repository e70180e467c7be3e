"""The Delivery page: a small read-only FastAPI app the Airflow api-server mounts at /mailtrace.

`GET /` is the page (HTML, with its script at `/static/delivery.js`); the script draws everything
from the JSON routes under `/api/`. Every route requires an Airflow user (`auth.get_viewer`);
addresses are masked unless that user may see them in full (see `mailtrace.ui.auth`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailtrace.paths import TEMPLATES_DIR
from mailtrace.s3 import split_s3_uri
from mailtrace.settings import REGISTRY
from mailtrace.ui import data, health, resend
from mailtrace.ui.auth import Viewer, get_viewer, login_url
from mailtrace.ui.export import csv_lines
from mailtrace.ui.masking import mask
from mailtrace.warehouse import connect

UI_TEMPLATES = TEMPLATES_DIR / "ui"
DEFAULT_DAYS = 30
DEFAULT_PENDING_HOURS = 24
DEFAULT_LIST_LIMIT = 100
DEFAULT_REPORT_LIMIT = 12
# Presigned report links are made on click and live just long enough to start the download.
REPORT_LINK_SECONDS = 15 * 60
STATEMENT_TIMEOUT = "20s"

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Everything the page needs comes from here; it may be framed by the Airflow UI (same origin).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    ),
}


def get_warehouse() -> Iterator[psycopg.Connection]:
    """FastAPI dependency: a read-only warehouse connection, one consistent snapshot per request."""
    conn = connect()
    try:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,))
            yield conn
    finally:
        conn.close()


ViewerDep = Annotated[Viewer, Depends(get_viewer)]
WarehouseDep = Annotated[psycopg.Connection, Depends(get_warehouse)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Most rows returned")]
Days = Annotated[int, Query(ge=1, le=366, description="Days ending today, in the deployment's time zone")]
Provider = Annotated[
    str | None, Query(pattern="^(gc_notify|ses)$", description="One provider; all when absent")
]
MAX_TREND_DAYS = 366
DEFAULT_TIMEZONE = REGISTRY["timezone"].default


def deployment_timezone() -> str:
    """Variable `mailtrace_timezone` (the report's time zone), or the default when unset or not a zone."""
    name = str(health.variable("timezone"))
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return DEFAULT_TIMEZONE
    return name


Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows skipped (paging)")]
SinceDay = Annotated[date | None, Query(description="From this day (deployment time zone)")]
UntilDay = Annotated[date | None, Query(description="To this day, inclusive (deployment time zone)")]
NotificationType = Annotated[str | None, Query(pattern="^[A-Za-z0-9_ -]{1,60}$")]
# The trigger form's incident id rule (mailtrace.resend_form.INCIDENT_ID_PATTERN) in the syntax FastAPI's
# validator takes (no look-ahead; its `$` is the end of the text).
IncidentId = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="One incident only")
]
Format = Annotated[str, Query(pattern="^(json|csv)$", description="csv: the whole filtered list as a file")]
# A CSV export holds at most this many rows (the page says so when the list is longer).
EXPORT_LIMIT = 100_000
FLAGGED_COLUMNS = [
    "subject_type",
    "subject_id",
    "email",
    "failure_reason",
    "flagged_at",
    "last_failed_event_id",
]
NOT_AT_PROVIDER_COLUMNS = [
    "sent_at", "subject_type", "subject_id", "notification_type", "recipient_email", "provider",
    "provider_reference", "event_id", "delivery_detail", "delivery_updated_at",
]  # fmt: skip
PENDING_COLUMNS = [
    "sent_at", "subject_type", "subject_id", "notification_type", "recipient_email", "provider",
    "provider_reference", "event_id", "local_status", "delivery_status",
]  # fmt: skip


def _day_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """[first 00:00, the day after last 00:00) in the deployment's time zone (None where not given)."""
    if first and last and first > last:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "The first day is after the last day")
    zone = ZoneInfo(deployment_timezone())
    start = datetime.combine(first, time.min, tzinfo=zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone) if last else None
    return start, end


def _csv(viewer: Viewer, name: str, listing: dict[str, Any], columns: list[str]) -> StreamingResponse:
    rows = _for(viewer, listing["rows"])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    return StreamingResponse(
        csv_lines(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="mailtrace-{name}-{stamp}.csv"',
            "X-Total-Rows": str(listing["total"]),
        },
    )


def _for(viewer: Viewer, payload: Any) -> Any:
    return payload if viewer.full_addresses else mask(payload)


@functools.cache
def _page_environment() -> Environment:
    """The page's Jinja environment, built once per process (it caches its compiled templates)."""
    return Environment(loader=FileSystemLoader(UI_TEMPLATES), autoescape=True)


def _page_or_export(
    viewer: Viewer,
    format: str,
    name: str,
    columns: list[str],
    limit: int,
    offset: int,
    extra: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """How a list route answers: one page as JSON, or (format=csv) the whole list as a CSV download."""

    def answer(fetch: Callable[..., Any]) -> Any:
        if format == "csv":
            return _csv(viewer, name, fetch(limit=EXPORT_LIMIT), columns)
        return _for(viewer, {**(extra or {}), **fetch(limit=limit, offset=offset)})

    return answer


def _render_page(request: Request, viewer: Viewer) -> str:
    template = _page_environment().get_template("delivery.html.j2")
    return template.render(
        base=request.scope.get("root_path", "").rstrip("/"),
        user=viewer.name,
        full_addresses=viewer.full_addresses,
        subject=request.query_params.get("subject", ""),
        days=DEFAULT_DAYS,
        timezone=deployment_timezone(),
        pending_hours=DEFAULT_PENDING_HOURS,
    )


def _presigned_link(bucket: str, key: str) -> str | None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from mailtrace.report import AWS_CONN_ID

    return S3Hook(aws_conn_id=AWS_CONN_ID).generate_presigned_url(
        "get_object", params={"Bucket": bucket, "Key": key}, expires_in=REPORT_LINK_SECONDS
    )


def _redirect_to_object(bucket: str, key: str, what: str) -> RedirectResponse:
    """A redirect to a short-lived presigned link to the S3 object, or 503 saying why there is none."""
    try:
        link = _presigned_link(bucket, key)
    except Exception as exc:  # S3 connection missing or misconfigured: say so, keep the page
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"Cannot sign a link to {what}: {type(exc).__name__}"
        ) from exc
    if not link:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Cannot sign a link to {what}")
    return RedirectResponse(link, status_code=status.HTTP_307_TEMPORARY_REDIRECT)


def build_router() -> APIRouter:
    # The router-wide dependency refuses unauthenticated requests before any route runs
    # (FastAPI resolves it once per request and hands the same Viewer to routes that ask).
    router = APIRouter(dependencies=[Depends(get_viewer)])

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, viewer: ViewerDep) -> HTMLResponse:
        return HTMLResponse(_render_page(request, viewer))

    @router.get("/static/delivery.js", include_in_schema=False)
    def script() -> FileResponse:
        return FileResponse(UI_TEMPLATES / "delivery.js", media_type="text/javascript")

    @router.get("/api/me")
    def me(viewer: ViewerDep) -> dict[str, Any]:
        return {"user": viewer.name, "full_addresses": viewer.full_addresses}

    @router.get("/api/health")
    def pipeline_health(conn: WarehouseDep) -> dict[str, Any]:
        return health.health(conn)

    @router.get("/api/trend")
    def trend(
        conn: WarehouseDep,
        days: Days = DEFAULT_DAYS,
        since: Annotated[
            date | None, Query(description="First day (deployment time zone); with until")
        ] = None,
        until: Annotated[date | None, Query(description="Last day, inclusive (default: today)")] = None,
        provider: Provider = None,
    ) -> dict[str, Any]:
        timezone = deployment_timezone()
        last = until or datetime.now(ZoneInfo(timezone)).date()
        first = since or last - timedelta(days=days - 1)
        if first > last:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "The first day is after the last day")
        if (last - first).days >= MAX_TREND_DAYS:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"At most {MAX_TREND_DAYS} days can be shown at once"
            )
        return data.trend(conn, first=first, last=last, timezone=timezone, provider=provider)

    @router.get("/api/search")
    def search(
        viewer: ViewerDep, conn: WarehouseDep, q: Annotated[str, Query(min_length=1, max_length=320)]
    ) -> dict[str, Any]:
        # The query is not echoed: it may be a full address the viewer may not see.
        return _for(viewer, {"rows": data.search(conn, q.strip())})

    @router.get("/api/flagged")
    def flagged(
        viewer: ViewerDep,
        conn: WarehouseDep,
        limit: Limit = DEFAULT_LIST_LIMIT,
        offset: Offset = 0,
        reason: Annotated[str | None, Query(pattern="^[a-z_]{1,40}$")] = None,
        subject_type: Annotated[str | None, Query(max_length=100)] = None,
        since: SinceDay = None,
        until: UntilDay = None,
        format: Format = "json",
    ) -> Any:
        first, after = _day_bounds(since, until)
        filters = {"reason": reason, "subject_type": subject_type or None, "since": first, "until": after}
        page = _page_or_export(viewer, format, "flagged", FLAGGED_COLUMNS, limit, offset)
        return page(lambda **paging: data.flagged(conn, **paging, **filters))

    @router.get("/api/not-at-provider")
    def not_at_provider(
        viewer: ViewerDep,
        conn: WarehouseDep,
        days: Days = DEFAULT_DAYS,
        limit: Limit = DEFAULT_LIST_LIMIT,
        offset: Offset = 0,
        notification_type: NotificationType = None,
        provider: Provider = None,
        since: SinceDay = None,
        until: UntilDay = None,
        format: Format = "json",
    ) -> Any:
        first, after = _day_bounds(since, until)
        filters = {
            "since": first or datetime.now(UTC) - timedelta(days=days),
            "until": after,
            "notification_type": notification_type,
            "provider": provider,
        }
        page = _page_or_export(viewer, format, "not-at-provider", NOT_AT_PROVIDER_COLUMNS, limit, offset)
        return page(lambda **paging: data.not_at_provider(conn, **paging, **filters))

    @router.get("/api/pending")
    def pending(
        viewer: ViewerDep,
        conn: WarehouseDep,
        hours: Annotated[int, Query(ge=1, le=24 * 366, description="Older than this many hours")] = (
            DEFAULT_PENDING_HOURS
        ),
        limit: Limit = DEFAULT_LIST_LIMIT,
        offset: Offset = 0,
        notification_type: NotificationType = None,
        provider: Provider = None,
        status: Annotated[str | None, Query(pattern="^(pending|none)$")] = None,
        since: SinceDay = None,
        format: Format = "json",
    ) -> Any:
        older_than = datetime.now(UTC) - timedelta(hours=hours)
        first, _ = _day_bounds(since, None)
        filters = {
            "older_than": older_than,
            "since": first,
            "notification_type": notification_type,
            "provider": provider,
            "status": status,
        }
        page = _page_or_export(
            viewer,
            format,
            "pending",
            PENDING_COLUMNS,
            limit,
            offset,
            {"hours": hours, "older_than": older_than},
        )
        return page(lambda **paging: data.pending_too_long(conn, **paging, **filters))

    @router.get("/api/reports")
    def reports(
        request: Request,
        viewer: ViewerDep,
        conn: WarehouseDep,
        kind: Annotated[str, Query(pattern="^(weekly|adhoc|all)$")] = "all",
        limit: Annotated[int, Query(ge=1, le=200)] = DEFAULT_REPORT_LIMIT,
    ) -> dict[str, Any]:
        kinds = ["weekly", "adhoc"] if kind == "all" else [kind]
        base = request.scope.get("root_path", "").rstrip("/")
        rows = []
        for row in data.reports(conn, kinds=kinds, limit=limit):
            # The CSV holds addresses in full, so only users who may see them get a download link.
            downloadable = viewer.full_addresses and row["row_count"] > 0
            rows.append(
                {
                    **row,
                    "s3_uri": f"s3://{row['bucket']}/{row['s3_key']}",
                    "download_url": f"{base}/api/reports/{row['id']}/download" if downloadable else None,
                }
            )
        return {"rows": rows}

    @router.get("/api/reports/{report_id}/download", status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    def download_report(report_id: int, viewer: ViewerDep, conn: WarehouseDep) -> RedirectResponse:
        if not viewer.full_addresses:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "The report lists full addresses")
        found = data.report_object(conn, report_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No such report")
        return _redirect_to_object(found["bucket"], found["s3_key"], "the report")

    @router.get("/api/resend")
    def resend_incidents(
        request: Request,
        viewer: ViewerDep,
        conn: WarehouseDep,
        limit: Annotated[int, Query(ge=1, le=100, description="Incidents per page")] = (
            resend.DEFAULT_INCIDENTS
        ),
        offset: Offset = 0,
        incident_id: IncidentId = None,
    ) -> dict[str, Any]:
        base = request.scope.get("root_path", "").rstrip("/")
        found = resend.incidents(conn, limit=limit, offset=offset, incident_id=incident_id)
        for incident in found["incidents"]:
            for run in incident["runs"]:
                # Same rule as the reports: the CSV's input column may hold whatever was pasted, addresses
                # included, so only users who may see addresses get a download link.
                run["outcome_url"] = (
                    f"{base}/api/resend/outcome?{urlencode({'run_id': run['dag_run_id']})}"
                    if viewer.full_addresses and run["outcome_uri"]
                    else None
                )
        return _for(viewer, found)

    @router.get("/api/resend/outcome", status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    def download_resend_outcome(
        viewer: ViewerDep, conn: WarehouseDep, run_id: Annotated[str, Query(min_length=1, max_length=250)]
    ) -> RedirectResponse:
        if not viewer.full_addresses:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "The outcome CSV may list full addresses")
        uri = resend.outcome_uri(conn, run_id)
        if not uri:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "No outcome CSV for this run")
        bucket, key = split_s3_uri(uri)
        return _redirect_to_object(bucket, key, "the outcome CSV")

    @router.get("/api/timeline")
    def timeline(
        viewer: ViewerDep,
        conn: WarehouseDep,
        subject_id: Annotated[str, Query(min_length=1, max_length=200)],
        subject_type: Annotated[str | None, Query(max_length=100)] = None,
        offset: Offset = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = data.TIMELINE_EVENT_LIMIT,
    ) -> dict[str, Any]:
        found = data.subject_timeline(
            conn, subject_id.strip(), subject_type=subject_type or None, limit=limit, offset=offset
        )
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"Nothing recorded for subject {subject_id!r}")
        return _for(viewer, found)

    return router


def create_app() -> FastAPI:
    app = FastAPI(
        title="mailtrace delivery",
        description="Read-only notification delivery views over the mailtrace warehouse.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(build_router())

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def to_login(request: Request, exc: StarletteHTTPException):
        # A person opening the page signed out is sent to Airflow's sign-in, then back here;
        # API clients get the plain 401.
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and request.url.path.rstrip("/") == (
            request.scope.get("root_path", "").rstrip("/")
        ):
            target = login_url(str(request.url))
            if target:
                return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
        return await http_exception_handler(request, exc)

    return app


app = create_app()
