"""A local stand-in for the GC Notify / GOV.UK Notify v2 API, for development and tests only.

It speaks the v2 API as `notifications_python_client` uses it (JWT auth, send email, get one, list
with pagination) and can be told to misbehave the ways a real API does (rate limits, 5xx, broken
bodies, dropped connections, slow answers, pagination loops), so the pipeline's resilience is
exercised against a real HTTP server instead of mocks.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from devtools.notify_sim.outcomes import (
    FINAL_STATUSES,
    QUERYABLE_STATUSES,
    expand_status_filter,
    outcome_for,
)
from devtools.notify_sim.store import (
    ListQuery,
    NotificationStore,
    StoredNotification,
    format_timestamp,
)

log = logging.getLogger(__name__)

API_PREFIX = "/v2/notifications"
ADMIN_PREFIX = "/_sim/"
TOKEN_LEEWAY_SECONDS = 30
RATE_WINDOW_SECONDS = 60
FROM_EMAIL = "mailtrace.sim@notification.canada.ca"
FAULT_KINDS = (
    "status",
    "truncated_json",
    "malformed_json",
    "reset",
    "delay",
    "loop_next",
    "drop_field",
    "unknown_status",
    "patch",
)
UNKNOWN_STATUS = "weird-new-status"
_CONFIGURABLE = (
    "rate_limit_per_minute",
    "settle_seconds",
    "retry_after_seconds",
    "page_size",
    "retention_days",
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^\s@]{1,64}@[^\s@]+\.[^\s@.]{2,}$")
_POST_FIELDS = frozenset(
    (
        "email_address",
        "template_id",
        "personalisation",
        "reference",
        "email_reply_to_id",
        "scheduled_for",
        "one_click_unsubscribe_url",
    )
)
_LIST_PARAMS = ("status", "template_type", "reference", "older_than", "include_jobs")
_TEMPLATE_TYPES = ("sms", "email", "letter")
_GATEWAY_PAGE = "<html><head><title>{code}</title></head><body><h1>{code} {reason}</h1></body></html>"


def is_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(_UUID.match(value))


def error_body(status_code: int, error: str, message: str) -> dict:
    """Notify's error shape."""
    return {"status_code": status_code, "errors": [{"error": error, "message": message}]}


@dataclass
class Fault:
    kind: str
    remaining: int
    path_prefix: str
    status: int | None = None
    retry_after: int | None = None
    delay_seconds: float | None = None
    # For "patch": notification id -> fields to overwrite in the JSON served for it.
    patches: dict[str, dict[str, Any]] | None = None

    def matches(self, method: str, path: str) -> bool:
        if not path.startswith(self.path_prefix):
            return False
        if self.kind == "loop_next":
            return method == "GET" and path == API_PREFIX
        if self.kind in ("drop_field", "unknown_status", "patch"):
            return method == "GET"
        return True


@dataclass
class Response:
    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    content_type: str = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.response = Response(status, error_body(status, error, message))


class NotifySimulator:
    """A GC Notify v2 API on loopback (or any host), serving from a daemon thread."""

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit_per_minute: int = 6000,
        retention_days: int = 7,
        page_size: int = 250,
        settle_seconds: float = 0.0,
        retry_after_seconds: int = 1,
        service_id: str | None = None,
        secret: str | None = None,
    ):
        # Without a path the database lives in a private temporary directory, removed by stop().
        self._temp_dir = None if db_path is not None else Path(tempfile.mkdtemp(prefix="notify-sim-"))
        self.db_path = Path(db_path) if db_path is not None else self._temp_dir / "notify-sim.sqlite"
        self.host = host
        self.port = port
        self.rate_limit_per_minute = rate_limit_per_minute
        self.retention_days = retention_days
        self.page_size = page_size
        self.settle_seconds = settle_seconds
        self.retry_after_seconds = retry_after_seconds
        self.service_id = service_id or str(uuid.uuid4())
        self._secret = secret or str(uuid.uuid4())
        self._store = NotificationStore(self.db_path)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._sent: list[dict] = []
        self._admitted: deque[float] = deque()
        self._counters = dict.fromkeys(("requests", "rate_limited", "posts_accepted", "faults_served"), 0)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        # Never show the secret.
        return f"NotifySimulator(service_id={self.service_id!r}, base_url={self.base_url!r})"

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def api_key(self) -> str:
        """A Notify-format key: `<name>-<service id>-<secret>`."""
        return f"mailtrace_sim-{self.service_id}-{self._secret}"

    @property
    def base_url(self) -> str | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.simulator = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll interval keeps stop() (and so every test using the simulator) quick.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="notify-sim", daemon=True
        )
        self._thread.start()
        log.info("Notify simulator serving on %s (service %s)", self.base_url, self.service_id)
        return self.base_url  # type: ignore[return-value]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._store.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def configure(self, **settings: Any) -> None:
        unknown = set(settings) - set(_CONFIGURABLE)
        if unknown:
            raise TypeError(f"cannot configure {sorted(unknown)}; allowed: {list(_CONFIGURABLE)}")
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """Forget every notification, fault, sent request and counter."""
        self._store.delete_all()
        with self._lock:
            self._faults.clear()
            self._sent.clear()
            self._admitted.clear()
            for name in self._counters:
                self._counters[name] = 0

    # ------------------------------------------------------------------------------- test controls

    def add_notifications(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store notifications as if they had been sent earlier (one transaction). Returns the count."""
        return self._store.insert_many(rows)

    def set_status(
        self,
        notification_id: str,
        status: str,
        *,
        provider_response: str | None = None,
        feedback_subtype: str | None = None,
        completed_at: datetime | None = None,
    ) -> None:
        """Move a notification to `status` now (or at `completed_at`), like a late provider receipt."""
        if status in FINAL_STATUSES:
            completed = format_timestamp(completed_at or datetime.now(UTC))
        else:
            completed = None
        found = self._store.update_status(
            str(notification_id),
            status,
            provider_response=provider_response,
            feedback_subtype=feedback_subtype,
            completed_at=completed,
        )
        if not found:
            raise KeyError(f"no notification {notification_id}")

    def add_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        path_prefix: str = API_PREFIX,
        status: int | None = None,
        retry_after: int | None = None,
        delay_seconds: float | None = None,
        patches: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Make the next `count` matching API requests misbehave (faults are used in the order added).

        A 'status' fault sends `Retry-After: <retry_after>` when given (for a 429 the simulator's
        `retry_after_seconds` otherwise); a negative `retry_after` sends no Retry-After at all.
        A 'patch' fault serves the notifications named in `patches` ({id: {field: value}}) with those
        fields overwritten, in lists and look-ups alike: a malformed notification Notify keeps serving
        (no id, a timestamp without a zone or in 2099, NUL or lone surrogates in a text field).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        if kind == "status" and status is None:
            raise ValueError("a 'status' fault needs status=<HTTP code>")
        if kind == "delay" and delay_seconds is None:
            raise ValueError("a 'delay' fault needs delay_seconds")
        if kind == "patch" and not patches:
            raise ValueError("a 'patch' fault needs patches={notification id: {field: value}}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(kind, count, path_prefix, status, retry_after, delay_seconds, patches))

    def sent_requests(self) -> list[dict]:
        with self._lock:
            return [dict(body) for body in self._sent]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    # ------------------------------------------------------------------------- request processing

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    self._counters["faults_served"] += 1
                    return fault
        return None

    def _rate_limited(self) -> Response | None:
        """Admit the request or answer 429. Only admitted requests fill the rolling window."""
        now = time.monotonic()
        with self._lock:
            while self._admitted and self._admitted[0] <= now - RATE_WINDOW_SECONDS:
                self._admitted.popleft()
            if len(self._admitted) < self.rate_limit_per_minute:
                self._admitted.append(now)
                return None
        return self.rate_limit_response(self.retry_after_seconds)

    def rate_limit_response(self, retry_after: int) -> Response:
        message = (
            f"Exceeded rate limit for key type LIVE of {self.rate_limit_per_minute} "
            f"requests per {RATE_WINDOW_SECONDS} seconds"
        )
        return Response(429, error_body(429, "RateLimitError", message), {"Retry-After": str(retry_after)})

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "AuthError", "Unauthorized: authentication token must be provided")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ApiError(403, "AuthError", "Invalid token: signature, api token not found") from None
        if header.get("alg") != "HS256":
            raise ApiError(403, "AuthError", "Invalid token: algorithm used is not HS256")
        if claims.get("iss") != self.service_id:
            raise ApiError(403, "AuthError", "Invalid token: service not found")
        try:
            jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.MissingRequiredClaimError as error:
            raise ApiError(403, "AuthError", f"Invalid token: {error.claim} field not provided") from None
        except jwt.PyJWTError:
            raise ApiError(403, "AuthError", "Invalid token: signature, api token not found") from None
        issued_at = claims.get("iat")
        if not isinstance(issued_at, int | float):
            raise ApiError(403, "AuthError", "Invalid token: iat field not provided")
        drift = issued_at - time.time()
        if drift < -TOKEN_LEEWAY_SECONDS:
            raise ApiError(403, "AuthError", "Error: Your system clock must be accurate to within 30 seconds")
        if drift > TOKEN_LEEWAY_SECONDS:
            raise ApiError(403, "AuthError", "Invalid token: Token can not be in the future")

    def _visibility(self) -> tuple[str, str]:
        """(oldest visible created_at, now), both in storage format."""
        now = datetime.now(UTC)
        return format_timestamp(now - timedelta(days=self.retention_days)), format_timestamp(now)

    def handle_api(
        self, method: str, path: str, query: str, body: bytes, authorization: str | None, base: str
    ) -> Response:
        """Everything after faults: auth, rate limit, routing. Raises ApiError for error answers."""
        self._authenticate(authorization)
        limited = self._rate_limited()
        if limited is not None:
            return limited
        if path == f"{API_PREFIX}/email" and method == "POST":
            return self._create_email(body, base)
        if path == API_PREFIX and method == "GET":
            return self._list(query, base)
        if path.startswith(f"{API_PREFIX}/") and method == "GET":
            return self._get_one(path.removeprefix(f"{API_PREFIX}/"), base)
        raise ApiError(404, "NotFound", "The requested URL was not found on the server")

    def _create_email(self, body: bytes, base: str) -> Response:
        try:
            request = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "BadRequestError", "Invalid JSON supplied in POST data") from None
        if not isinstance(request, dict):
            raise ApiError(400, "BadRequestError", "Invalid JSON supplied in POST data")
        problems = _validate_email_request(request)
        if problems:
            return _validation_failure(problems)
        personalisation = request.get("personalisation") or {}
        subject = str(personalisation.get("subject", "Notification"))
        text = str(personalisation.get("body", ""))
        notification_id = str(uuid.uuid4())
        created = datetime.now(UTC)
        outcome = outcome_for(request["email_address"])
        if outcome.status is not None:
            completed = created + timedelta(seconds=self.settle_seconds) if outcome.settles else None
            self._store.insert_many(
                [
                    {
                        "id": notification_id,
                        "reference": request.get("reference"),
                        "email_address": request["email_address"],
                        "status": outcome.status,
                        "provider_response": outcome.provider_response,
                        "feedback_subtype": outcome.feedback_subtype,
                        "template_id": request["template_id"],
                        "subject": subject,
                        "body": text,
                        "created_at": created,
                        "sent_at": created,
                        "completed_at": completed,
                    }
                ]
            )
        with self._lock:
            self._sent.append({**request, "id": notification_id})
            self._counters["posts_accepted"] += 1
        payload = {
            "id": notification_id,
            "reference": request.get("reference"),
            "content": {"body": text, "subject": subject, "from_email": FROM_EMAIL},
            "uri": f"{base}{API_PREFIX}/{notification_id}",
            "template": self._template(request["template_id"], base),
            "scheduled_for": None,
        }
        return Response(201, payload)

    def _get_one(self, notification_id: str, base: str) -> Response:
        if not is_uuid(notification_id):
            raise ApiError(400, "ValidationError", "notification_id is not a valid UUID")
        since, now = self._visibility()
        found = self._store.get(notification_id.lower(), visible_since=since, now=now)
        if found is None:
            raise ApiError(404, "NoResultFound", "No result found")
        return Response(200, self._serialize(found, base))

    def _list(self, query: str, base: str) -> Response:
        params = parse_qs(query, keep_blank_values=True)
        problems = [
            f"Additional properties are not allowed ({name} was unexpected)"
            for name in params
            if name not in _LIST_PARAMS
        ]
        statuses = [s for value in params.get("status", []) for s in value.split(",") if s]
        problems += [
            f"status {s} is not one of [{', '.join(QUERYABLE_STATUSES)}]"
            for s in statuses
            if s not in QUERYABLE_STATUSES
        ]
        template_types = [t for value in params.get("template_type", []) for t in value.split(",") if t]
        problems += [
            f"template_type {t} is not one of [{', '.join(_TEMPLATE_TYPES)}]"
            for t in template_types
            if t not in _TEMPLATE_TYPES
        ]
        older_than = params.get("older_than", [None])[0]
        if older_than is not None and not is_uuid(older_than):
            problems.append("older_than is not a valid UUID")
        include_jobs = params.get("include_jobs", [None])[0]
        if include_jobs is not None and include_jobs not in ("true", "True"):
            problems.append(f"include_jobs {include_jobs} is not one of [true, True]")
        if problems:
            return _validation_failure(problems)
        since, now = self._visibility()
        reference = params.get("reference", [None])[0]
        page = self._store.page(
            ListQuery(
                statuses=expand_status_filter(statuses),
                email_only=not template_types or "email" in template_types,
                reference=reference,
                older_than=older_than.lower() if older_than else None,
                visible_since=since,
                now=now,
                limit=self.page_size,
            )
        )
        link_params: list[tuple[str, str]] = [("status", s) for s in statuses]
        link_params += [("template_type", t) for t in template_types]
        if reference is not None:
            link_params.append(("reference", reference))
        if include_jobs is not None:
            link_params.append(("include_jobs", include_jobs))
        links = {"current": _link(base, [*link_params, *_older_than_param(older_than)])}
        # Like Notify: every non-empty page links to the next one; the first empty page ends the walk.
        if page:
            links["next"] = _link(base, [*link_params, ("older_than", page[-1].id)])
        return Response(200, {"notifications": [self._serialize(n, base) for n in page], "links": links})

    def _template(self, template_id: str, base: str) -> dict:
        return {
            "id": template_id,
            "version": 1,
            "uri": f"{base}/services/{self.service_id}/templates/{template_id}",
        }

    def _serialize(self, notification: StoredNotification, base: str) -> dict:
        """The v2 notification JSON, with GC Notify's field names."""
        return {
            "id": notification.id,
            "reference": notification.reference,
            "email_address": notification.email_address,
            "phone_number": None,
            "line_1": None,
            "line_2": None,
            "line_3": None,
            "line_4": None,
            "line_5": None,
            "line_6": None,
            "postcode": None,
            "type": "email",
            "status": notification.status,
            "status_description": notification.status_description,
            "provider_response": notification.provider_response,
            "template": self._template(notification.template_id, base),
            "body": notification.body,
            "subject": notification.subject,
            "created_at": notification.created_at,
            "created_by_name": None,
            "sent_at": notification.sent_at,
            "completed_at": notification.completed_at,
            "scheduled_for": None,
            "postage": None,
        }

    # ---------------------------------------------------------------------------- admin endpoints

    def handle_admin(self, method: str, path: str, body: bytes) -> Response:
        route = (method, path.removeprefix(ADMIN_PREFIX).rstrip("/"))
        if route == ("POST", "reset"):
            self.reset()
            return Response(200, {"reset": True})
        if route == ("GET", "stats"):
            return Response(200, self.stats())
        if route == ("GET", "sent"):
            return Response(200, self.sent_requests())
        if route == ("POST", "notifications"):
            rows = json.loads(body or b"[]")
            for row in rows:
                for name in ("created_at", "sent_at", "completed_at"):
                    if row.get(name):
                        row[name] = datetime.fromisoformat(row[name].replace("Z", "+00:00"))
            return Response(201, {"added": self.add_notifications(rows)})
        if route == ("POST", "faults"):
            spec = json.loads(body or b"{}")
            for fault in spec if isinstance(spec, list) else [spec]:
                self.add_fault(fault.pop("kind"), **fault)
            with self._lock:
                return Response(201, {"faults": len(self._faults)})
        raise ApiError(404, "NotFound", f"no simulator admin route {method} {path}")


def _validation_failure(problems: list[str]) -> Response:
    """400 listing every problem, as Notify's schema validation does."""
    errors = [{"error": "ValidationError", "message": problem} for problem in problems]
    return Response(400, {"status_code": 400, "errors": errors})


def _older_than_param(older_than: str | None) -> list[tuple[str, str]]:
    return [] if older_than is None else [("older_than", older_than)]


def _link(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}{API_PREFIX}" + (f"?{urlencode(params)}" if params else "")


def _validate_email_request(request: dict) -> list[str]:
    """Problems in a POST /v2/notifications/email body, worded like Notify's schema errors."""
    problems = [
        f"Additional properties are not allowed ({name} was unexpected)"
        for name in request
        if name not in _POST_FIELDS
    ]
    for required in ("email_address", "template_id"):
        if required not in request:
            problems.append(f"{required} is a required property")
    email = request.get("email_address")
    if "email_address" in request and not (isinstance(email, str) and _EMAIL.match(email)):
        problems.append("email_address Not a valid email address")
    if "template_id" in request and not is_uuid(request["template_id"]):
        problems.append("template_id is not a valid UUID")
    if "reference" in request and not isinstance(request["reference"], str):
        problems.append(f"reference {request['reference']} is not of type string")
    if "personalisation" in request and not isinstance(request["personalisation"], dict):
        problems.append(f"personalisation {request['personalisation']} is not of type object")
    return problems


class _Handler(BaseHTTPRequestHandler):
    """Reads the request, applies any due fault, and writes the simulator's answer."""

    protocol_version = "HTTP/1.1"
    server_version = "notify-sim"
    sys_version = ""

    @property
    def simulator(self) -> NotifySimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # The request line only: headers (and so the bearer token) are never logged.
        log.debug("%s - %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        sim = self.simulator
        try:
            if split.path.startswith(ADMIN_PREFIX):
                self._send(sim.handle_admin(method, split.path, body))
                return
            sim._count("requests")
            self._serve_api(method, split.path, split.query, body)
        except ApiError as error:
            self._send(error.response)
        except (ValueError, TypeError, KeyError) as error:
            self._send(Response(400, error_body(400, "BadRequestError", str(error))))

    def _serve_api(self, method: str, path: str, query: str, body: bytes) -> None:
        sim = self.simulator
        fault = sim._take_fault(method, path)
        if fault is not None:
            log.info("serving fault %s for %s %s", fault.kind, method, path)
            if fault.kind == "reset":
                self._reset_connection()
                return
            if fault.kind == "status":
                self._send(_fault_response(sim, fault))
                return
            if fault.kind == "delay":
                time.sleep(fault.delay_seconds or 0)
        base = f"http://{self.headers.get('Host') or sim.base_url.removeprefix('http://')}"
        try:
            response = sim.handle_api(method, path, query, body, self.headers.get("Authorization"), base)
        except ApiError as error:
            response = error.response
        if fault is not None and response.status < 300:
            _apply_data_fault(fault, response)
        self._send(response)

    def _send(self, response: Response) -> None:
        if response.status == 429:
            self.simulator._count("rate_limited")
        body = response.raw_body
        if body is None:
            body = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _reset_connection(self) -> None:
        """Drop the connection without a word: SO_LINGER 0 makes close() send a TCP RST."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _fault_response(sim: NotifySimulator, fault: Fault) -> Response:
    status = fault.status or 500
    # retry_after: None = the simulator's default (429) or no header (others); negative = no header.
    omit_retry_after = fault.retry_after is not None and fault.retry_after < 0
    if status == 429:
        response = sim.rate_limit_response(
            sim.retry_after_seconds if fault.retry_after is None else fault.retry_after
        )
        if omit_retry_after:
            del response.headers["Retry-After"]  # a rate limit that does not say when to come back
        return response
    headers = {} if fault.retry_after is None or omit_retry_after else {"Retry-After": str(fault.retry_after)}
    if status in (502, 503, 504):
        # What a load balancer in front of the API answers: HTML, not Notify's JSON.
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[status]
        page = _GATEWAY_PAGE.format(code=status, reason=reason).encode()
        return Response(status, headers=headers, raw_body=page, content_type="text/html")
    return Response(status, error_body(status, "Exception", "Internal server error"), headers)


def _apply_data_fault(fault: Fault, response: Response) -> None:
    payload = response.payload
    notifications = payload.get("notifications", [payload]) if isinstance(payload, dict) else []
    if fault.kind == "truncated_json":
        encoded = json.dumps(payload).encode()
        response.raw_body = encoded[: len(encoded) // 2]
    elif fault.kind == "malformed_json":
        response.raw_body = b"<html><body>Notify is having a moment</body></html>"
    elif fault.kind == "loop_next":
        payload["links"]["next"] = payload["links"]["current"]
    elif fault.kind == "drop_field":
        for notification in notifications:
            notification.pop("status", None)
    elif fault.kind == "unknown_status":
        for notification in notifications:
            notification["status"] = UNKNOWN_STATUS
    elif fault.kind == "patch":
        for notification in notifications:
            notification.update((fault.patches or {}).get(notification.get("id"), {}))
