"""Shared fixtures: real Postgres, the Notify simulator, moto's S3/SQS server and an SMTP server.

Everything runs on loopback. Postgres is the server at 127.0.0.1:5432 when it answers (or the DSN
in MAILTRACE_TEST_PG_DSN); otherwise a throwaway cluster is started for the session.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

# Airflow reads its home at import time; give the whole test session its own before anything imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="mailtrace-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")

import psycopg  # noqa: E402
import pytest  # noqa: E402
from psycopg import sql  # noqa: E402

from devtools.pgcluster import PgCluster, airflow_connection_json, server_answers  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_admin_dsn():
    explicit = os.environ.get("MAILTRACE_TEST_PG_DSN")
    if explicit:
        yield explicit
        return
    if server_answers(LOCAL_SERVER_DSN):
        yield LOCAL_SERVER_DSN
        return
    data_root = Path(tempfile.mkdtemp(prefix="mailtrace-pg-"))
    cluster = PgCluster(data_root / "data")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(data_root, ignore_errors=True)


def _admin_execute(admin_dsn: str, statement: sql.Composable) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(statement)


def _drop_database(admin_dsn: str, name: str) -> None:
    _admin_execute(admin_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _with_dbname(dsn: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=dbname)


@pytest.fixture(scope="session")
def warehouse_template(pg_admin_dsn):
    """A database with every migration applied, cloned for each test (much faster than migrating)."""
    from mailtrace.warehouse import apply_migrations

    name = f"mailtrace_tpl_{os.getpid()}"
    _drop_database(pg_admin_dsn, name)
    _admin_execute(pg_admin_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(_with_dbname(pg_admin_dsn, name)) as conn:
        apply_migrations(conn)
    yield name
    _drop_database(pg_admin_dsn, name)


@pytest.fixture
def empty_database_dsn(pg_admin_dsn):
    """A fresh database with no schema at all (for migration tests)."""
    name = f"mailtrace_empty_{uuid.uuid4().hex[:12]}"
    _admin_execute(pg_admin_dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(pg_admin_dsn, name)
    _drop_database(pg_admin_dsn, name)


@pytest.fixture
def warehouse_dsn(pg_admin_dsn, warehouse_template, monkeypatch):
    """DSN of a per-test warehouse database, also exposed as the `mailtrace_warehouse` connection."""
    name = f"mailtrace_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(
        pg_admin_dsn,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(warehouse_template)
        ),
    )
    dsn = _with_dbname(pg_admin_dsn, name)
    monkeypatch.setenv("AIRFLOW_CONN_MAILTRACE_WAREHOUSE", airflow_connection_json(dsn))
    yield dsn
    _drop_database(pg_admin_dsn, name)


@pytest.fixture
def warehouse_conn(warehouse_dsn):
    with psycopg.connect(warehouse_dsn) as conn:
        yield conn


@pytest.fixture
def notify_sim(tmp_path, monkeypatch):
    """A running Notify simulator, wired as the `notify_api` connection."""
    from devtools.notify_sim import NotifySimulator

    sim = NotifySimulator(tmp_path / "notify-sim.sqlite")
    base_url = sim.start()
    notify_conn = {"conn_type": "http", "host": base_url, "password": sim.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_API", json.dumps(notify_conn))
    yield sim
    sim.stop()


@pytest.fixture
def notify_client(notify_sim):
    from notifications_python_client.notifications import NotificationsAPIClient

    return NotificationsAPIClient(notify_sim.api_key, base_url=notify_sim.base_url)


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3/SQS/SES API server on loopback (server mode, so every client library really talks HTTP)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """`aws_default` pointed at moto; returns a boto3 session factory for test-side checks."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "ca-central-1", "endpoint_url": moto_endpoint},
            }
        ),
    )

    class _Aws:
        endpoint = moto_endpoint

        @staticmethod
        def client(service: str):
            return boto3.client(service, endpoint_url=moto_endpoint, region_name="ca-central-1")

    return _Aws()


@pytest.fixture
def s3_bucket(aws):
    name = f"mailtrace-test-{uuid.uuid4().hex[:10]}"
    aws.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "ca-central-1"}
    )
    return name


class _MailSink:
    """aiosmtpd handler keeping every message it receives, parsed."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refused: set[str] = set()  # recipients answered "550 no such mailbox"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    """A real SMTP server on loopback, wired as `smtp_default`; `.messages` holds what it received."""
    from aiosmtpd.controller import Controller

    sink = _MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "mailtrace@example.gov"},
            }
        ),
    )
    yield sink
    controller.stop()


# ------------------------------------------------------------------------------------ test tiers
# `make test-fast` runs `pytest -m "not services"`: pure unit tests, no server, seconds. A test needs
# services when it uses one of these fixtures (directly or through another fixture), or when its module
# starts servers, clusters, containers or Airflow runs by itself.
SERVICE_FIXTURES = frozenset(
    {"pg_admin_dsn", "moto_endpoint", "notify_sim", "smtp_server", "airflow_metadata_db"}
)
MODULES_WITH_OWN_SERVICES = frozenset(
    {
        "test_bench_smoke",
        "test_compose",
        "test_dag_runs",
        "test_deploy_layout",
        "test_notify_sim",
        "test_pgcluster",
        "test_reliability_kills",
        "test_seed",
        "test_ses_events_unconfigured",
        "test_ui_browser",
        "test_ui_routes",
    }
)


def pytest_configure(config):
    config.addinivalue_line("markers", "services: needs a server (Postgres, moto, SMTP, Notify sim, Airflow)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if (
            SERVICE_FIXTURES.intersection(item.fixturenames)
            or module in MODULES_WITH_OWN_SERVICES
            or module.startswith("test_e2e")
        ):
            item.add_marker(pytest.mark.services)


@pytest.fixture
def as_viewer():
    """A TestClient of the Delivery page's app whose requests come from `viewer` (its auth dependency
    overridden). The app is imported here, not at the top: most tests never need FastAPI."""
    from fastapi.testclient import TestClient

    from mailtrace.ui import app as ui_app
    from mailtrace.ui.auth import get_viewer

    clients = []

    def make(viewer) -> TestClient:
        ui_app.app.dependency_overrides[get_viewer] = lambda: viewer
        client = TestClient(ui_app.app)
        clients.append(client)
        return client

    yield make
    ui_app.app.dependency_overrides.clear()
    for client in clients:
        client.close()
