"""The Delivery page: a small read-only FastAPI app the Airflow api-server mounts at /mailtrace.

`GET /` is the page (HTML, with its script at `/static/delivery.js`); the script draws everything
from the JSON routes under `/api/`. Every route requires an Airflow user (`auth.get_viewer`);
addresses are masked unless that user may see them in full (see `mailtrace.ui.auth`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailtrace.paths import TEMPLATES_DIR
from mailtrace.ui import data, health
from mailtrace.ui.auth import Viewer, get_viewer, login_url
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
DEFAULT_TIMEZONE = "America/Vancouver"


def deployment_timezone() -> str:
    """Variable `mailtrace_timezone` (the report's time zone), or the default when unset or not a zone."""
    name = str(health.variable("mailtrace_timezone", DEFAULT_TIMEZONE))
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return DEFAULT_TIMEZONE
    return name


def _for(viewer: Viewer, payload: Any) -> Any:
    return payload if viewer.full_addresses else mask(payload)


def _render_page(request: Request, viewer: Viewer) -> str:
    env = Environment(loader=FileSystemLoader(UI_TEMPLATES), autoescape=True)
    template = env.get_template("delivery.html.j2")
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

    @router.get("/api/flagged")
    def flagged(viewer: ViewerDep, conn: WarehouseDep, limit: Limit = DEFAULT_LIST_LIMIT) -> dict[str, Any]:
        return _for(viewer, data.flagged(conn, limit=limit))

    @router.get("/api/not-at-provider")
    def not_at_provider(
        viewer: ViewerDep, conn: WarehouseDep, days: Days = DEFAULT_DAYS, limit: Limit = DEFAULT_LIST_LIMIT
    ) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(days=days)
        return _for(viewer, data.not_at_provider(conn, since=since, limit=limit))

    @router.get("/api/pending")
    def pending(
        viewer: ViewerDep,
        conn: WarehouseDep,
        hours: Annotated[int, Query(ge=1, le=24 * 366, description="Older than this many hours")] = (
            DEFAULT_PENDING_HOURS
        ),
        limit: Limit = DEFAULT_LIST_LIMIT,
    ) -> dict[str, Any]:
        older_than = datetime.now(UTC) - timedelta(hours=hours)
        listing = data.pending_too_long(conn, older_than=older_than, limit=limit)
        return _for(viewer, {"hours": hours, "older_than": older_than, **listing})

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
        try:
            link = _presigned_link(found["bucket"], found["s3_key"])
        except Exception as exc:  # S3 connection missing or misconfigured: say so, keep the page
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"Cannot sign a link to the report: {type(exc).__name__}"
            ) from exc
        if not link:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Cannot sign a link to the report")
        return RedirectResponse(link, status_code=status.HTTP_307_TEMPORARY_REDIRECT)

    @router.get("/api/timeline")
    def timeline(
        viewer: ViewerDep,
        conn: WarehouseDep,
        subject_id: Annotated[str, Query(min_length=1, max_length=200)],
        subject_type: Annotated[str | None, Query(max_length=100)] = None,
    ) -> dict[str, Any]:
        found = data.subject_timeline(
            conn, subject_id.strip(), subject_type=subject_type or None, limit=data.TIMELINE_EVENT_LIMIT
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
