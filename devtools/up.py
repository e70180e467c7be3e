"""`make up`: mailtrace in a real Airflow 3 on loopback, to watch in the UI (`make down` stops it).

Starts the demo's services (warehouse cluster under `.mailtrace/`, Notify simulator, moto's S3/SQS, an
SMTP server keeping mail in `.mailtrace/mail`) and Airflow's api-server, scheduler, dag-processor and
triggerer as separate processes on a PostgreSQL metadata database in the same cluster, with
LocalExecutor, or CeleryExecutor with Redis (`MAILTRACE_EXECUTOR=celery`). A simulator trickle keeps
new notifications, receipts and SES events arriving so the schedules have work to show.

`AirflowStack` is also what the end-to-end tests start, so they run exactly what `make up` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from devtools import demo
from devtools.pgcluster import PgCluster

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".mailtrace"
PID_FILE_NAME = "up.json"
WAREHOUSE_DB = "mailtrace_up"
METADATA_DB = "mailtrace_airflow"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# celery 5.7.0 dropped celery.backends.database.retry, which the 3.26.0 provider imports: workers exit.
CELERY_PINS = "apache-airflow-providers-celery==3.26.0 celery[redis]==5.6.3"


# Run in a child (importing the Celery app configures Airflow from the stack's env, not this process's):
# exits 0 when every worker named on the command line answers a broker ping.
CELERY_PING = """
import sys
from airflow.providers.celery.executors.celery_executor_utils import app
replies = app.control.ping(timeout=3)
answering = {name.split("@")[0] for reply in replies for name in reply}
missing = sorted(set(sys.argv[1:]) - answering)
print("not answering yet: " + ", ".join(missing) if missing else "all answering")
sys.exit(1 if missing else 0)
"""


def _say(message: str) -> None:
    print(f"[up] {message}", flush=True)


def worker_hostname() -> str:
    """Airflow's `hostname_callable` for Celery workers: one name per worker on one machine, so a task
    instance's `hostname` tells which worker ran it."""
    return f"{socket.getfqdn()}-{os.environ.get('MAILTRACE_WORKER_NAME', 'worker')}"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def celery_problem() -> str | None:
    """Why the CeleryExecutor cannot run with this venv, or None when it can."""
    if importlib.util.find_spec("airflow.providers.celery") is None:
        return f"Airflow's Celery provider is not installed: pip install {CELERY_PINS}"
    # What a worker imports first; in a child process, so this one's Airflow stays unconfigured.
    probe = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if probe.returncode:
        error = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Airflow's Celery provider does not import ({error}): pip install {CELERY_PINS}"
    return None


class StackError(RuntimeError):
    """A reason the stack cannot start, worded for the person who typed `make up`."""


@dataclass
class StackSettings:
    state_dir: Path = STATE_DIR
    executor: str = "local"
    ui_port: int = 8080
    ui_user: str = "admin"
    ui_password: str = "admin"  # noqa: S105 - the documented local default
    celery_workers: int = 2
    celery_worker_concurrency: int = 4
    # An existing PostgreSQL server (admin DSN) for the warehouse and metadata databases; None starts a
    # cluster under state_dir.
    admin_dsn: str | None = None
    database_suffix: str = ""
    subjects: int = 400
    trickle_seconds: float = 30.0
    # Development stacks and tests run the provider pipelines more often than production does.
    pipeline_every_seconds: int | None = 120
    dag_parse_seconds: int = 30
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> StackSettings:
        return cls(
            executor=os.environ.get("MAILTRACE_EXECUTOR", "local").lower(),
            ui_port=int(os.environ.get("MAILTRACE_UI_PORT", "8080")),
            ui_user=os.environ.get("MAILTRACE_UI_USER", "admin"),
            ui_password=os.environ.get("MAILTRACE_UI_PASSWORD", "admin"),
            celery_workers=int(os.environ.get("MAILTRACE_CELERY_WORKERS", "2")),
            admin_dsn=os.environ.get("MAILTRACE_WAREHOUSE_URL"),
            subjects=int(os.environ.get("MAILTRACE_DEMO_SUBJECTS", "400")),
        )


class ManagedProcess:
    """One long-running command in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None
        # Every process group this process ever led: a killed scheduler's LocalExecutor workers outlive it.
        self.groups: list[int] = []

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log_file:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.groups.append(self.popen.pid)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL, *, group: bool = True) -> None:
        """Send `sig` to the process (and, by default, every process it started)."""
        if self.popen is None:
            return
        try:
            if group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def restart(self) -> None:
        """Start the command again, first ending whatever is left of its earlier runs.

        As a container's or a systemd unit's restart does. A scheduler killed on its own leaves its
        LocalExecutor workers and serve-logs behind, and they share its metadata-database connection: the
        transaction it died in stays open as long as they live, and the new scheduler skips every DAG run
        that transaction had locked, for good (a resend run stayed "running" until they were killed).
        """
        self.stop()
        self.start()

    def stop(self, timeout: float = 30) -> None:
        if self.popen is None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for group in self.groups:  # whatever is left, including orphaned task processes
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait()


class AirflowStack:
    """Everything `make up` runs; `start()` returns when the UI answers and lists the DAGs."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.state_dir = settings.state_dir
        self.processes: dict[str, ManagedProcess] = {}
        self.env: dict[str, str] = {}
        self._stack = ExitStack()
        self._stop_trickle = threading.Event()
        self.cluster: PgCluster | None = None
        self.sim = None
        self.s3_endpoint = ""
        self.queue_url = ""
        self.drop_queue_url = ""
        self.maildir = Path()
        self.warehouse_dsn = ""
        self.metadata_dsn = ""
        self.celery_queue = ""
        self.started_at: datetime | None = None
        self._databases: list[str] = []

    # ------------------------------------------------------------------------------------ start/stop

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ui_port}"

    def __enter__(self) -> AirflowStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, ready_timeout: float = 600) -> None:
        settings = self.settings
        if settings.executor not in EXECUTORS:
            raise StackError(f"MAILTRACE_EXECUTOR must be 'local' or 'celery', not {settings.executor!r}")
        if settings.executor == "celery" and (problem := celery_problem()):
            raise StackError(f"MAILTRACE_EXECUTOR=celery cannot run: {problem}")
        if not port_is_free(settings.ui_port):
            raise StackError(
                f"port {settings.ui_port} (the Airflow UI) is already in use on 127.0.0.1: stop what "
                "listens there, or choose another port with MAILTRACE_UI_PORT=<port>"
            )
        self.started_at = datetime.now(UTC)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # moto accepts any credentials; boto3 only needs some to sign with.
        os.environ.update(
            AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION=demo.REGION
        )
        admin_dsn = self._start_postgres()
        self.warehouse_dsn = self._fresh_database(admin_dsn, WAREHOUSE_DB + settings.database_suffix)
        self.metadata_dsn = self._fresh_database(admin_dsn, METADATA_DB + settings.database_suffix)
        self.sim = demo.start_simulator(self._stack, self.state_dir)
        self.s3_endpoint = demo.start_moto(self._stack)
        smtp_port, self.maildir = demo.start_smtp(self._stack, self.state_dir)
        self.queue_url = self._prepare_aws()
        self.drop_queue_url = self._prepare_resend_drop()
        self.env = self._airflow_env(smtp_port)
        self._seed()
        started = time.monotonic()
        self._run_airflow("db", "migrate")
        _say(f"airflow db migrate: {time.monotonic() - started:.0f}s")
        if settings.executor == "celery":
            self._prepare_redis()
        for component in AIRFLOW_COMPONENTS:
            self._add_process(component, [self._airflow_bin(), *self._component_args(component)], self.env)
        for number in range(1, settings.celery_workers + 1 if settings.executor == "celery" else 1):
            self._add_worker(number)
        self._write_pid_file()
        self._start_trickle()
        self.wait_until_ready(ready_timeout)

    def stop(self, timeout: float = 15) -> None:
        self._stop_trickle.set()
        for process in self.processes.values():
            process.kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            process.stop(max(0.0, deadline - time.monotonic()))
        self._stack.close()
        if self.settings.admin_dsn and self._databases:
            self._drop_databases()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        (self.state_dir / PID_FILE_NAME).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------- components

    def _start_postgres(self) -> str:
        if self.settings.admin_dsn:
            return self.settings.admin_dsn
        self.cluster = PgCluster(demo.cluster_dir(self.state_dir))
        admin_dsn = self.cluster.start()
        _say(f"PostgreSQL cluster in {self.cluster.data_dir} on port {self.cluster.port}")
        return admin_dsn

    def _fresh_database(self, admin_dsn: str, name: str) -> str:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._databases.append(name)
        return psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)

    def _drop_databases(self) -> None:
        """On a server the stack does not own, leave nothing behind (a cluster of its own keeps them)."""
        with psycopg.connect(self.settings.admin_dsn, autocommit=True) as conn:
            for name in self._databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._databases.clear()

    def _prepare_aws(self) -> str:
        """The report bucket and an SES queue of this stack's own. moto keeps one state per process, so a
        second stack in the same process (the end-to-end tests) finds the bucket already there."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=demo.REGION)
        try:
            location = {"LocationConstraint": demo.REGION}
            s3.create_bucket(Bucket=demo.BUCKET, CreateBucketConfiguration=location)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        sqs = boto3.client("sqs", endpoint_url=self.s3_endpoint, region_name=demo.REGION)
        queue_name = demo.SES_QUEUE + self.settings.database_suffix.replace("_", "-")
        return sqs.create_queue(QueueName=queue_name)["QueueUrl"]

    def _prepare_resend_drop(self) -> str:
        """The S3 drop: a queue of this stack's own that the bucket tells of every upload under
        resend-requests/ (S3 sends its `s3:TestEvent` there first; the drop DAG sets it aside). A second
        stack in the same moto replaces the bucket's notification with its own queue."""
        import boto3

        sqs = boto3.client("sqs", endpoint_url=self.s3_endpoint, region_name=demo.REGION)
        queue_name = demo.DROP_QUEUE + self.settings.database_suffix.replace("_", "-")
        queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=demo.REGION)
        s3.put_bucket_notification_configuration(
            Bucket=demo.BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": "mailtrace-resend-drop",
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "resend-requests/"}]}},
                    }
                ]
            },
        )
        return queue_url

    def _airflow_env(self, smtp_port: int) -> dict[str, str]:
        settings = self.settings
        env = demo.airflow_env(self.warehouse_dsn, self.sim, self.s3_endpoint, smtp_port, self.queue_url)
        if os.environ.get("PYTHONPATH"):  # keep what the caller added (an extra provider, say)
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], os.environ["PYTHONPATH"]])
        airflow_home = self.state_dir / "airflow"
        airflow_home.mkdir(parents=True, exist_ok=True)
        passwords_file = airflow_home / "simple_auth_manager_passwords.json"
        passwords_file.write_text(json.dumps({settings.ui_user: settings.ui_password}))
        passwords_file.chmod(0o600)
        info = psycopg.conninfo.conninfo_to_dict(self.metadata_dsn)
        password = f":{info['password']}" if info.get("password") else ""
        sqlalchemy_url = (
            f"postgresql+psycopg2://{info.get('user', 'postgres')}{password}@{info.get('host', '127.0.0.1')}:"
            f"{info.get('port', 5432)}/{info['dbname']}"
        )
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"
                if settings.executor == "celery"
                else "LocalExecutor",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.ui_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.ui_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__API__BASE_URL": self.ui_url,
                "AIRFLOW__API__PORT": str(settings.ui_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(settings.dag_parse_seconds),
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(settings.dag_parse_seconds),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(demo.free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(demo.free_port()),
            }
        )
        env["AIRFLOW_VAR_MAILTRACE_RESEND_DROP_QUEUE_URL"] = self.drop_queue_url
        if settings.pipeline_every_seconds:
            env["MAILTRACE_PIPELINE_EVERY_SECONDS"] = str(settings.pipeline_every_seconds)
        if settings.executor == "celery":
            self.celery_queue = f"mailtrace-{uuid.uuid4().hex[:8]}"
            env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] = self.celery_queue
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + sqlalchemy_url
        env.update(settings.extra_env)
        return env

    def _fernet_key(self) -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()

    def _seed(self) -> None:
        sys.path.insert(0, str(REPO / "plugins"))  # where Airflow finds the mailtrace package
        from devtools.seed import seed_event_log
        from mailtrace.warehouse import apply_migrations

        with psycopg.connect(self.warehouse_dsn) as conn:
            apply_migrations(conn)
            counts = seed_event_log(conn, self.sim, subjects=self.settings.subjects, weeks=1)
            demo.queue_ses_events(conn, self.s3_endpoint, self.queue_url, batch="seed")
            allowed = [
                email
                for (email,) in conn.execute(
                    "SELECT email FROM mailtrace.contact ORDER BY subject_id LIMIT %s",
                    (max(1, self.settings.subjects // 2),),
                )
            ]
        self.env["AIRFLOW_VAR_MAILTRACE_RESEND_ALLOW_LIST"] = json.dumps(allowed)
        _say(f"warehouse seeded: {counts['events']} notifications to {counts['contacts']} registrations")

    def _airflow_bin(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def _run_airflow(self, *args: str) -> None:
        log_path = self.state_dir / "logs" / f"airflow-{'-'.join(args)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log_file:
            completed = subprocess.run(
                [self._airflow_bin(), *args],
                env=self.env,
                cwd=REPO,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        if completed.returncode:
            raise StackError(f"airflow {' '.join(args)} failed (exit {completed.returncode}); see {log_path}")

    def _component_args(self, component: str) -> list[str]:
        if component == "api-server":
            return ["api-server", "--host", "127.0.0.1", "--port", str(self.settings.ui_port)]
        return [component]

    def _prepare_redis(self) -> None:
        if redis_answers(6379):
            port = 6379
            _say("Celery broker: the Redis at 127.0.0.1:6379")
        else:
            server = shutil.which("redis-server")
            if server is None:
                raise StackError(
                    "CeleryExecutor needs Redis: none answers on 6379 and redis-server is missing "
                    "(apt-get install redis-server)"
                )
            port = demo.free_port()
            self._add_process(
                "redis",
                [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                self.env,
            )
            deadline = time.monotonic() + 30
            while not redis_answers(port):
                if time.monotonic() > deadline:
                    raise StackError(
                        f"redis-server did not answer on {port}; see {self.processes['redis'].log_path}"
                    )
                time.sleep(0.2)
            _say(f"Celery broker: redis-server started on 127.0.0.1:{port}")
        self.env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{port}/0"

    def _add_worker(self, number: int) -> None:
        name = f"worker{number}"
        env = {
            **self.env,
            "MAILTRACE_WORKER_NAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.up.worker_hostname",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(demo.free_port()),
        }
        argv = [
            self._airflow_bin(), "celery", "worker", "--queues", self.celery_queue,
            "--concurrency", str(self.settings.celery_worker_concurrency), "--celery-hostname", f"{name}@%h",
        ]  # fmt: skip
        self._add_process(f"celery-{name}", argv, env)

    def _add_process(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = ManagedProcess(name, argv, env, self.state_dir / "logs" / f"{name}.log")
        process.start()
        self.processes[name] = process

    def restart(self, name: str) -> None:
        """Start a process again (after a test killed it); it keeps its command, env and log."""
        self.processes[name].restart()
        self._write_pid_file()

    def _write_pid_file(self) -> None:
        record = {
            "pid": os.getpid(),
            "ui": self.ui_url,
            "processes": {name: process.pid for name, process in self.processes.items()},
            "cluster": str(self.cluster.data_dir) if self.cluster else None,
        }
        (self.state_dir / PID_FILE_NAME).write_text(json.dumps(record, indent=2))

    # ------------------------------------------------------------------------------ readiness & API

    def health(self) -> dict | None:
        try:
            response = httpx.get(f"{self.ui_url}/api/v2/monitor/health", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_until_ready(self, timeout: float) -> None:
        """Until the health endpoint says every component is healthy and the mailtrace DAGs are listed."""
        deadline = time.monotonic() + timeout
        expected = {path.stem for path in (REPO / "dags").glob("mailtrace_*.py")}
        while True:
            self._check_processes()
            health = self.health() or {}
            healthy = all(
                health.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )
            if healthy:
                listed = {dag["dag_id"] for dag in self.api().get("/dags", params={"limit": 100})["dags"]}
                if expected <= listed:
                    if self.settings.executor == "celery":
                        self._wait_for_celery_workers(deadline)
                    return
            if time.monotonic() > deadline:
                raise StackError(
                    f"Airflow not ready after {timeout:.0f}s (health {health}); logs in "
                    f"{self.state_dir / 'logs'}"
                )
            time.sleep(1)

    def _wait_for_celery_workers(self, deadline: float) -> None:
        """Until every worker answers a broker ping: a worker still importing Airflow takes no task, so
        a run started before it is up would all go to the other worker."""
        names = [f"worker{number}" for number in range(1, self.settings.celery_workers + 1)]
        while True:
            self._check_processes()
            probe = subprocess.run(
                [sys.executable, "-c", CELERY_PING, *names],
                env=self.env,
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                _say(f"Celery workers answering: {', '.join(names)}")
                return
            if time.monotonic() > deadline:
                answer = probe.stdout.strip() or probe.stderr[-300:]
                raise StackError(
                    f"Celery workers did not all answer a ping ({answer}); logs in {self.state_dir / 'logs'}"
                )
            time.sleep(2)

    def _check_processes(self) -> None:
        for process in self.processes.values():
            if not process.running():
                raise StackError(
                    f"{process.name} exited (code {process.popen.returncode}); see {process.log_path}"
                )

    def api(self) -> ApiClient:
        return ApiClient(self.ui_url, self.settings.ui_user, self.settings.ui_password)

    # ------------------------------------------------------------------------------------- trickle

    def _start_trickle(self) -> None:
        if self.settings.trickle_seconds <= 0:
            return
        thread = threading.Thread(target=self._trickle, name="mailtrace-trickle", daemon=True)
        thread.start()

    def _trickle(self) -> None:
        rng = random.Random()
        tick = 0
        while not self._stop_trickle.wait(self.settings.trickle_seconds):
            tick += 1
            try:
                with psycopg.connect(self.warehouse_dsn) as conn:
                    add_trickle_notifications(conn, self.sim, rng, count=3)
                    if tick % 4 == 0:
                        batch = f"t{tick}-{rng.getrandbits(24):06x}"
                        demo.queue_ses_events(
                            conn, self.s3_endpoint, self.queue_url, batch=batch, age=timedelta(0)
                        )
            except (psycopg.Error, OSError) as error:  # the stack may be stopping; try again next tick
                _say(f"trickle skipped a tick: {type(error).__name__}")


def add_trickle_notifications(conn: psycopg.Connection, sim, rng: random.Random, *, count: int) -> None:
    """`count` emails sent just now to known contacts: logged in the warehouse, and at the simulator with
    the fate their address encodes (a bounce address bounces)."""
    from devtools.notify_sim.outcomes import outcome_for

    contacts = conn.execute(
        "SELECT subject_id, email FROM mailtrace.contact ORDER BY random() LIMIT %s", (count,)
    ).fetchall()
    now = datetime.now(UTC)
    rows = []
    for subject_id, email in contacts:
        event_id = f"evt-live-{uuid.uuid4().hex[:12]}"
        reference = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, provider_reference, client_reference,
                   sent_at, local_status)
               VALUES (%s, 'registration', %s, 'RENEWAL_REMINDER', %s, 'gc_notify', %s, %s, %s, 'SENT')""",
            (event_id, subject_id, email, reference, event_id, now),
        )
        outcome = outcome_for(email)
        settled = outcome.settles and outcome.status is not None
        rows.append(
            {
                "id": reference,
                "reference": event_id,
                "email_address": email,
                "status": outcome.status or "delivered",
                "created_at": now,
                "sent_at": now,
                "completed_at": now + timedelta(seconds=2) if settled else None,
                "provider_response": outcome.provider_response,
                "feedback_subtype": outcome.feedback_subtype,
                "subject": f"Registration {subject_id} is due for renewal",
                "body": f"Registration {subject_id}: see your account for details.",
            }
        )
    conn.commit()
    sim.add_notifications(rows)


class ApiClient:
    """Airflow's REST API v2 with a JWT from /auth/token (what a script or ops tool would use)."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        response = httpx.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        token = response.json()["access_token"]
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def get(self, path: str, **kwargs) -> dict:
        response = self.client.get(path, **kwargs)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict) -> dict:
        response = self.client.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def patch(self, path: str, body: dict) -> dict:
        response = self.client.patch(path, json=body)
        response.raise_for_status()
        return response.json()


# ------------------------------------------------------------------------------------------- commands


def _running_record(state_dir: Path) -> dict | None:
    path = state_dir / PID_FILE_NAME
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if pid_alive(record["pid"]) else None


def up(settings: StackSettings) -> int:
    running = _running_record(settings.state_dir)
    if running:
        _say(f"mailtrace is already up (pid {running['pid']}, UI {running['ui']}): `make down` stops it")
        return 1
    started = time.monotonic()
    stopping = threading.Event()

    def _terminate(signum, frame):
        stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    stack = AirflowStack(settings)
    try:
        stack.start()
        _say(f"ready in {time.monotonic() - started:.0f}s ({EXECUTORS[settings.executor]})")
        print(
            f"\n  Airflow UI   {stack.ui_url}\n  sign in      {settings.ui_user} / {settings.ui_password}\n"
            f"  mail         {stack.maildir} (Maildir)\n  logs         {settings.state_dir / 'logs'}\n"
            f"  warehouse    {stack.warehouse_dsn}\n  S3 (moto)    {stack.s3_endpoint}: an ID list copied to "
            f"s3://{demo.BUCKET}/resend-requests/<incident_id>/<file>.csv starts a dry run\n\n"
            "  Ctrl-C here, or `make down` from another shell, stops everything.\n",
            flush=True,
        )
        while True:
            for process in stack.processes.values():
                if not process.running():
                    _say(f"{process.name} exited (code {process.popen.returncode}); see {process.log_path}")
                    return 1
            time.sleep(2)
    except StackError as error:
        _say(str(error))
        return 1
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        _say("stopped everything `make up` started")


def down(state_dir: Path, timeout: float = 90) -> int:
    path = state_dir / PID_FILE_NAME
    if not path.exists():
        _say("nothing to stop: mailtrace is not up")
        return 0
    record = json.loads(path.read_text())
    if pid_alive(record["pid"]):
        os.kill(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(record["pid"]) and time.monotonic() < deadline:
            time.sleep(0.5)
    # Whatever the launcher could not stop (it was killed, say): its process groups and its cluster.
    for pid in record.get("processes", {}).values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if record.get("cluster") and (Path(record["cluster"]) / "postmaster.pid").exists():
        PgCluster(Path(record["cluster"])).stop()
    path.unlink(missing_ok=True)
    _say("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["up", "down"], default="up")
    args = parser.parse_args(argv)
    settings = StackSettings.from_environment()
    if args.command == "down":
        return down(settings.state_dir)
    return up(settings)


if __name__ == "__main__":
    sys.exit(main())
