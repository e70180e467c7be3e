"""`make demo`: the whole pipeline end to end on loopback, started and stopped by this script.

Starts a PostgreSQL cluster under `.mailtrace/` (unless MAILTRACE_WAREHOUSE_URL names a warehouse),
the Notify simulator, moto's S3/SQS API and an SMTP server that keeps what it receives; seeds a
realistic event log; runs every DAG with `airflow dags test`; prints where the results are.
"""

from __future__ import annotations

import json
import logging
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.pgcluster import PgCluster, airflow_connection_json

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".mailtrace"
DEMO_DB = "mailtrace_demo"
BUCKET = "mailtrace-reports"
SES_QUEUE = "mailtrace-ses-events"
# The queue the bucket sends uploads under resend-requests/ to (the S3 drop; `make up` only).
DROP_QUEUE = "mailtrace-resend-drops"
SUBJECTS = int(os.environ.get("MAILTRACE_DEMO_SUBJECTS", "400"))
REGION = "ca-central-1"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def cluster_dir(state_dir: Path = STATE_DIR) -> Path:
    """`.mailtrace/pg` in the project, unless the postgres user cannot reach it (a clone under /root)."""
    preferred = state_dir / "pg" / "data"
    blocked = PgCluster.unreachable_ancestor(preferred)
    if blocked is None:
        return preferred
    fallback = Path(tempfile.gettempdir()) / "mailtrace-demo-pg" / "data"
    _say(f"the postgres user cannot enter {blocked}; keeping the demo cluster in {fallback} instead")
    return fallback


def _start_warehouse(stack: ExitStack) -> str:
    """Return a DSN to a fresh `mailtrace_demo` database (recreated on every run, so results repeat).

    The database lives on the server in MAILTRACE_WAREHOUSE_URL when it is set (nothing else there is
    touched), else on a cluster of the demo's own.
    """
    admin_dsn = os.environ.get("MAILTRACE_WAREHOUSE_URL")
    if admin_dsn:
        _say(f"creating database {DEMO_DB} on the server in MAILTRACE_WAREHOUSE_URL")
    else:
        cluster = PgCluster(cluster_dir(), port=free_port())
        admin_dsn = cluster.start()
        stack.callback(cluster.stop)
        _say(f"PostgreSQL cluster in {cluster.data_dir} on port {cluster.port}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=DEMO_DB)


def start_simulator(stack: ExitStack, state_dir: Path = STATE_DIR):
    from devtools.notify_sim import NotifySimulator

    db_path = state_dir / "notify-sim.sqlite"
    db_path.unlink(missing_ok=True)
    sim = NotifySimulator(db_path)
    sim.start()
    stack.callback(sim.stop)
    _say(f"Notify simulator at {sim.base_url}")
    return sim


def start_moto(stack: ExitStack) -> str:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3/SQS request drowns the summary
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack.callback(server.stop)
    endpoint = f"http://127.0.0.1:{port}"
    _say(f"S3/SQS API (moto) at {endpoint}")
    return endpoint


def start_smtp(stack: ExitStack, state_dir: Path = STATE_DIR) -> tuple[int, Path]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox

    maildir = state_dir / "mail"
    shutil.rmtree(maildir, ignore_errors=True)
    port = free_port()
    controller = Controller(Mailbox(str(maildir)), hostname="127.0.0.1", port=port)
    controller.start()
    stack.callback(controller.stop)
    _say(f"SMTP server on 127.0.0.1:{port}, keeping mail in {maildir}")
    return port, maildir


def airflow_env(warehouse_dsn: str, sim, s3_endpoint: str, smtp_port: int, queue_url: str) -> dict[str, str]:
    variables = {
        "REPORT_BUCKET": BUCKET,
        "EXAMINER_EMAILS": json.dumps(["examiners@registry.example.gov"]),
        "ALERT_EMAILS": json.dumps(["data-eng@registry.example.gov"]),
        "TIMEZONE": "America/Vancouver",
        "ENVIRONMENT": "demo",
        "SES_QUEUE_URL": queue_url,
        "NOTIFY_TEMPLATE_ID": "9f3c6f1e-5c1a-4c55-9a41-6a9c0a1f2b7d",
        # The seeded mix fails ~14% of mail on purpose; alert below 75% so the demo run stays green.
        "ALERT_DELIVERY_RATE_FLOOR": "0.75",
        "ALERT_NOT_AT_PROVIDER_MAX": "1000",
    }
    airflow_home = STATE_DIR / "airflow"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
        "AIRFLOW_CONN_MAILTRACE_WAREHOUSE": airflow_connection_json(warehouse_dsn),
        "AIRFLOW_CONN_NOTIFY_API": json.dumps(
            {"conn_type": "http", "host": sim.base_url, "password": sim.api_key}
        ),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": "demo",
                "password": "demo",
                "extra": {"region_name": REGION, "endpoint_url": s3_endpoint},
            }
        ),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {
                    "disable_tls": True,
                    "disable_ssl": True,
                    "from_email": "mailtrace@registry.example.gov",
                },
            }
        ),
    }
    env.update({f"AIRFLOW_VAR_MAILTRACE_{name}": value for name, value in variables.items()})
    return env


def _airflow(env: dict[str, str], *args: str, log_name: str) -> int:
    log_path = STATE_DIR / "logs" / f"{log_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.monotonic()
    with log_path.open("w") as log_file:
        completed = subprocess.run(
            [airflow, *args], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO
        )
    status = "ok" if completed.returncode == 0 else f"FAILED (exit {completed.returncode})"
    _say(f"airflow {' '.join(args[:3])}: {status} in {time.monotonic() - started:.0f}s, log {log_path}")
    return completed.returncode


def _prepare_aws(endpoint: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    return sqs.create_queue(QueueName=SES_QUEUE)["QueueUrl"]


def queue_ses_events(
    conn: psycopg.Connection,
    endpoint: str,
    queue_url: str,
    *,
    batch: str = "demo",
    age: timedelta | None = None,
) -> int:
    """A few SES-sent notifications in the log and their SES events (SNS envelope) in the queue.

    `batch` keeps the IDs of repeated calls apart; `age` is how long before now they were sent.
    """
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    now = datetime.now(UTC).replace(microsecond=0)
    age = timedelta(hours=3) if age is None else age
    fates = ["Delivery", "Delivery", "Bounce", "Complaint"]
    for n, fate in enumerate(fates, start=1):
        message_id = f"0100018c-{batch}-{n:04d}-{uuid.uuid5(uuid.NAMESPACE_URL, f'{batch}:{n}')}"
        recipient = f"filer{n}@taxes.example.com"
        sent_at = now - age - timedelta(minutes=n)
        conn.execute(
            """INSERT INTO mailtrace.notification_event (event_id, subject_type, subject_id,
                   notification_type, recipient_email, provider, provider_reference, sent_at, local_status)
               VALUES (%s, 'tax_return', %s, 'SUBMISSION_ERROR', %s, 'ses', %s, %s, 'SENT')
               ON CONFLICT (event_id) DO NOTHING""",
            (f"ses-evt-{batch}-{n}", f"TR-2026-{n:05d}", recipient, message_id, sent_at),
        )
        event_at = (sent_at + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
        mail = {
            "timestamp": sent_at.isoformat().replace("+00:00", "Z"),
            "messageId": message_id,
            "source": "taxes@example.gov",
            "destination": [recipient],
        }
        ses_event = {"eventType": fate, "mail": mail}
        if fate == "Delivery":
            ses_event["delivery"] = {
                "timestamp": event_at,
                "recipients": [recipient],
                "smtpResponse": "250 2.6.0 Message received",
            }
        elif fate == "Bounce":
            ses_event["bounce"] = {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "timestamp": event_at,
                "bouncedRecipients": [
                    {
                        "emailAddress": recipient,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
            }
        else:
            ses_event["complaint"] = {
                "timestamp": event_at,
                "complainedRecipients": [{"emailAddress": recipient}],
                "complaintFeedbackType": "abuse",
            }
        envelope = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:{REGION}:123456789012:ses-events",
            "Message": json.dumps(ses_event),
            "Timestamp": event_at,
        }
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope))
    conn.commit()
    return len(fates)


def _last_monday() -> date:
    today = datetime.now(UTC).date()
    return today - timedelta(days=today.weekday())


def _summary(warehouse_dsn: str, s3_endpoint: str, maildir: Path, sim) -> None:
    import boto3

    print("\n" + "=" * 78)
    print("mailtrace demo: results")
    print("=" * 78)
    with psycopg.connect(warehouse_dsn) as conn:
        shown = {k: v for k, v in psycopg.conninfo.conninfo_to_dict(warehouse_dsn).items() if k != "password"}
        print(f"\nWarehouse: {psycopg.conninfo.make_conninfo(**shown)}  (schema mailtrace)")
        rows = conn.execute(
            """SELECT coalesce(delivery_status, '(no verdict)'), coalesce(failure_reason, ''), count(*)
               FROM mailtrace.notification_status GROUP BY 1, 2 ORDER BY 3 DESC"""
        ).fetchall()
        print("  notification_status by delivery_status / failure_reason:")
        for status, reason, count in rows:
            print(f"    {status:<18} {reason:<17} {count:>6}")
        for label, query in [
            ("provider_event rows (history)", "SELECT count(*) FROM mailtrace.provider_event"),
            ("orphan_notification rows", "SELECT count(*) FROM mailtrace.orphan_notification"),
            ("flagged_address rows", "SELECT count(*) FROM mailtrace.flagged_address"),
            ("report_manifest rows", "SELECT count(*) FROM mailtrace.report_manifest"),
        ]:
            try:
                (count,) = conn.execute(query).fetchone()
            except psycopg.Error:
                conn.rollback()
                count = "n/a"
            print(f"  {label:<32} {count}")
        print("  try: SELECT * FROM mailtrace.deliverability_daily ORDER BY day DESC LIMIT 10;")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    reports_dir = STATE_DIR / "reports"
    shutil.rmtree(reports_dir, ignore_errors=True)
    print(f"\nS3 bucket {BUCKET} ({len(objects)} objects, copied to {reports_dir}):")
    for obj in objects:
        target = reports_dir / obj["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, obj["Key"], str(target))
        print(f"  s3://{BUCKET}/{obj['Key']}  ({obj['Size']} bytes)")
    messages = list(mailbox.Maildir(str(maildir), create=True))
    sent = sim.sent_requests()
    print(f"\nEmails POSTed to the Notify simulator during the run ({len(sent)}; resend DAG):")
    for body in sent:
        print(f"  reference {body.get('reference')}: {body.get('personalisation', {}).get('subject', '')}")
    print(f"\nEmails received by the SMTP server ({len(messages)}, Maildir {maildir}):")
    for message in messages:
        print(f"  to {message['To']}: {message['Subject']}")
    print()


def main() -> int:
    STATE_DIR.mkdir(exist_ok=True)
    # moto accepts any credentials; boto3 only needs some to sign with.
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION=REGION)
    with ExitStack() as stack:
        warehouse_dsn = _start_warehouse(stack)
        sim = start_simulator(stack)
        s3_endpoint = start_moto(stack)
        smtp_port, maildir = start_smtp(stack)
        queue_url = _prepare_aws(s3_endpoint)
        env = airflow_env(warehouse_dsn, sim, s3_endpoint, smtp_port, queue_url)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})

        sys.path.insert(0, str(REPO / "plugins"))  # where Airflow finds the mailtrace package
        from devtools.seed import seed_event_log
        from mailtrace.warehouse import apply_migrations

        with psycopg.connect(warehouse_dsn) as conn:
            applied = apply_migrations(conn)
            _say(f"warehouse migrations applied: {', '.join(applied) or 'none needed'}")
            counts = seed_event_log(conn, sim, subjects=SUBJECTS, weeks=1)
            _say(f"seeded {counts}")
            _say(f"queued {queue_ses_events(conn, s3_endpoint, queue_url)} SES events")
            # Non-production resends only reach allow-listed addresses: allow two of the three
            # demo recipients, so the outcome CSV shows both a send and an allow-list skip.
            allowed = [
                email
                for (email,) in conn.execute(
                    "SELECT email FROM mailtrace.contact WHERE subject_id IN ('STR-000001', 'STR-000002')"
                )
            ]
            env["AIRFLOW_VAR_MAILTRACE_RESEND_ALLOW_LIST"] = json.dumps(allowed)

        failures = 0
        if _airflow(env, "db", "migrate", log_name="airflow-db-migrate"):
            _say("airflow db migrate failed; see its log")
            return 1
        week_after = _last_monday().isoformat()
        runs = [
            ("mailtrace_notify_pipeline", []),
            ("mailtrace_ses_events", []),
            ("mailtrace_flags_rebuild", []),
            ("mailtrace_weekly_report", [f"{week_after}T14:00:00+00:00"]),
            (
                "mailtrace_resend",
                [
                    "-c",
                    json.dumps(
                        {
                            "incident_id": "INC-DEMO-1",
                            "inline_ids": "STR-000001\nSTR-000002\nSTR-000003\nnot-an-id",
                            "id_type": "registration",
                            "dry_run": False,
                        }
                    ),
                ],
            ),
        ]
        for dag_id, extra in runs:
            if not (REPO / "dags" / f"{dag_id}.py").exists():
                _say(f"{dag_id}: not in dags/, skipped")
                continue
            failures += bool(_airflow(env, "dags", "test", dag_id, *extra, log_name=dag_id))
        _summary(warehouse_dsn, s3_endpoint, maildir, sim)
        _say(f"Airflow logs: {STATE_DIR / 'logs'}; task logs under {STATE_DIR / 'airflow' / 'logs'}")
        _say("stopping the services the demo started")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
