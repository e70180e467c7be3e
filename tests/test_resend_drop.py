"""S3 drop: which uploads are ID lists (real S3 event shapes), and an upload's way from the bucket's queue
to one dry run in the resend ledger (moto's S3 notifying its SQS, the watcher's trigger, real Postgres)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, quote_plus

import pytest
from test_drop_queue import drop_queue_for, in_queue, watch_until

from mailtrace import drop_queue
from mailtrace.drop_queue import DropQueueTrigger
from mailtrace.resend import ResendParams, plan_resend, summarize_run
from mailtrace.resend.drop import Drop, drops_in, incident_of, messages_of, plan_drops

BUCKET = "mailtrace-reports"
PREFIX = f"s3://{BUCKET}/resend-requests/"
ETAG = "bc9280dfc1d4e67233f138f5bbbf0951"


def s3_record(key: str, *, bucket: str = BUCKET, event: str = "ObjectCreated:Put", **s3_object) -> dict:
    """One record as S3 writes it: the key URL-encoded (spaces as "+"), the ETag bare."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "ca-central-1",
        "eventTime": "2026-12-02T13:02:29.892Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xR"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "mailtrace-resend-drop",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": 1024,
                "eTag": ETAG,
                "sequencer": "0055AED6DCD90281E5",
                **s3_object,
            },
        },
    }


def message(body: object, message_id: str | None = None) -> dict:
    """An SQS message as the trigger receives it (boto3's receive_message)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {"MessageId": message_id or str(uuid.uuid4()), "ReceiptHandle": "AQEB" + "x" * 20, "Body": text}


def one_drop(*records: dict) -> Drop:
    drops, set_aside = drops_in([message({"Records": list(records)})], PREFIX)
    assert set_aside == []
    (drop,) = drops
    return drop


def reasons(*messages: dict) -> list[str]:
    drops, set_aside = drops_in(list(messages), PREFIX)
    assert drops == []
    return [item.reason for item in set_aside]


# ----------------------------------------------------------------------------------- which uploads


def test_an_upload_under_an_incident_folder_is_a_drop_with_its_key_decoded():
    drop = one_drop(s3_record("resend-requests/INC-2026-014/tax service list (v2).csv"))
    assert drop.incident_id == "INC-2026-014"
    assert drop.uri == f"s3://{BUCKET}/resend-requests/INC-2026-014/tax service list (v2).csv"


def test_moto_encodes_the_slashes_too_and_the_key_reads_the_same():
    key = "resend-requests/INC-7/a+b list.csv"  # a literal "+" in the name is "%2B" in the event
    record = s3_record(key)
    record["s3"]["object"]["key"] = quote_plus(key)  # moto: "resend-requests%2FINC-7%2Fa%2Bb+list.csv"
    assert one_drop(record).uri == f"s3://{BUCKET}/{key}"


def test_an_upper_case_csv_suffix_is_a_list():
    assert one_drop(s3_record("resend-requests/INC-7/IDS.CSV")).incident_id == "INC-7"


def test_a_multipart_upload_and_a_copy_are_uploads_too():
    for event in ("ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy"):
        assert one_drop(s3_record("resend-requests/INC-7/ids.csv", event=event)).incident_id == "INC-7"


def test_the_bucket_notifying_through_sns_is_read_as_well():
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:ca-central-1:123456789012:resend-drops",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps({"Records": [s3_record("resend-requests/INC-7/ids.csv")]}),
    }
    drops, _ = drops_in([message(envelope)], PREFIX)
    assert [drop.incident_id for drop in drops] == ["INC-7"]


@pytest.mark.parametrize(
    ("key", "bucket", "reason"),
    [
        ("resend-requests/INC-7/ids.txt", BUCKET, "not a .csv file"),
        ("resend-requests/INC-7/ids.csv.gz", BUCKET, "not a .csv file"),
        ("resend-requests/INC-7/", BUCKET, "not a .csv file"),
        ("resend-requests/ids.csv", BUCKET, "one incident folder, then the file"),
        ("resend-requests/INC-7/2026/ids.csv", BUCKET, "one incident folder, then the file"),
        ("resend-requests-old/INC-7/ids.csv", BUCKET, "not under the ID list prefix"),
        ("reports/2026/INC-7/ids.csv", BUCKET, "not under the ID list prefix"),
        ("resend-requests/INC 7!/ids.csv", BUCKET, "is not an incident id"),
        ("resend-requests/../ids.csv", BUCKET, "is not an incident id"),
        ("resend-requests/-INC-7/ids.csv", BUCKET, "is not an incident id"),
        ("resend-requests/INC-7/ids.csv", "someone-elses-bucket", "is not the resend bucket"),
    ],
)
def test_anything_but_a_csv_in_an_incident_folder_is_set_aside_with_its_reason(key, bucket, reason):
    (said,) = reasons(message({"Records": [s3_record(key, bucket=bucket)]}))
    assert reason in said


def test_an_incident_folder_with_a_line_break_is_set_aside():
    record = s3_record("x")
    record["s3"]["object"]["key"] = quote("resend-requests/INC-7\n/ids.csv")
    (said,) = reasons(message({"Records": [record]}))
    assert "is not an incident id" in said


def test_s3s_test_event_and_what_is_not_an_s3_event_are_set_aside():
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-12-02T13:02:29Z",
        "Bucket": BUCKET,
    }
    said = reasons(
        message(test_event),
        message("not json {"),
        message({"Records": []}),
        message({"Records": [{"eventSource": "aws:sqs"}]}),
        message({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": BUCKET}}}]}),
        message({"Records": [s3_record("resend-requests/INC-7/ids.csv", event="ObjectRemoved:Delete")]}),
    )
    assert said == [
        "S3's test event (sent when the notification is configured)",
        "body is not JSON",
        "not an S3 event notification",
        "not an S3 event record",
        "S3 event record without bucket name or object key",
        "event 'ObjectRemoved:Delete' is not an upload",
    ]


def test_a_bad_record_never_hides_the_good_ones_beside_it():
    drops, set_aside = drops_in(
        [
            message(
                {
                    "Records": [
                        s3_record("resend-requests/INC-1/ids.txt"),
                        s3_record("resend-requests/INC-2/a.csv"),
                    ]
                }
            ),
            message("garbage"),
            message({"Records": [s3_record("resend-requests/INC-3/b.csv")]}),
        ],
        PREFIX,
    )
    assert [drop.incident_id for drop in drops] == ["INC-2", "INC-3"]
    assert len(set_aside) == 2


def test_a_custom_prefix_is_honoured():
    drops, set_aside = drops_in(
        [
            message(
                {
                    "Records": [
                        s3_record("lists/incoming/INC-7/ids.csv"),
                        s3_record("resend-requests/INC-8/ids.csv"),
                    ]
                }
            )
        ],
        f"s3://{BUCKET}/lists/incoming/",
    )
    assert [drop.incident_id for drop in drops] == ["INC-7"]
    assert [item.reason for item in set_aside] == [
        f"not under the ID list prefix s3://{BUCKET}/lists/incoming/"
    ]


def test_incident_of_says_which_incident_or_why_not():
    assert incident_of(BUCKET, "resend-requests/INC-7/ids.csv", PREFIX) == ("INC-7", "")
    assert incident_of(BUCKET, "resend-requests/INC-7/ids.csv", f"s3://{BUCKET}/")[0] is None


# ----------------------------------------------------------------------------------- one dry run per upload


def test_one_object_version_is_one_run_id_however_often_it_arrives():
    record = s3_record("resend-requests/INC-7/ids.csv")
    quoted = s3_record("resend-requests/INC-7/ids.csv", eTag=f'"{ETAG}"')  # as S3's API answers write it
    drops, _ = drops_in([message({"Records": [record]}), message({"Records": [record, quoted]})], PREFIX)
    assert len(drops) == 1
    assert one_drop(quoted).run_id == drops[0].run_id


def test_new_bytes_or_a_new_version_or_another_name_is_another_dry_run():
    base = one_drop(s3_record("resend-requests/INC-7/ids.csv")).run_id
    others = {
        one_drop(s3_record("resend-requests/INC-7/ids.csv", eTag="0" * 32)).run_id,
        one_drop(
            s3_record("resend-requests/INC-7/ids.csv", versionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
        ).run_id,
        one_drop(s3_record("resend-requests/INC-7/ids-2.csv")).run_id,
    }
    assert base not in others and len(others) == 3


def test_the_run_id_is_one_airflow_accepts_and_names_the_incident():
    from airflow.configuration import conf

    drop = one_drop(s3_record("resend-requests/INC-2026.014_b/list with spaces.csv"))
    assert re.match(conf.get("scheduler", "allowed_run_id_pattern"), drop.run_id)
    assert drop.run_id.startswith("s3drop__INC-2026.014_b__")
    assert len(drop.run_id) <= 250


def test_messages_are_read_from_the_watchers_asset_events():
    batch = [message({"Records": [s3_record("resend-requests/INC-7/ids.csv")]})]
    events = [
        SimpleNamespace(
            extra={"from_trigger": True, "payload": {"status": "success", "message_batch": batch}}
        ),
        SimpleNamespace(extra={}),  # an event created by hand in the UI carries no batch
    ]
    assert messages_of(events) == batch


def test_plan_drops_asks_for_dry_runs_the_resend_accepts(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", BUCKET)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_DROP_ID_TYPE", "tax_return")
    batch = [message({"Records": [s3_record("resend-requests/INC-7/ids.csv")]})]
    (planned,) = plan_drops([SimpleNamespace(extra={"payload": {"message_batch": batch}})])
    params = ResendParams.from_mapping(planned["conf"])
    assert params.dry_run is True
    assert (params.incident_id, params.id_type) == ("INC-7", "tax_return")
    assert params.ids_s3_uri == f"{PREFIX}INC-7/ids.csv"
    assert planned["trigger_run_id"].startswith("s3drop__INC-7__")


def test_a_run_without_upload_events_starts_nothing_and_needs_no_settings(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", raising=False)
    assert plan_drops([SimpleNamespace(extra={"note": "created in the UI"})]) == []


def test_the_dag_triggers_dry_runs_of_the_resend_and_skips_one_already_there():
    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).resolve().parents[1] / "dags"
    dag = DagBag(dag_folder=str(dags / "mailtrace_resend_drop.py")).dags["mailtrace_resend_drop"]
    start = dag.get_task("start_dry_run")
    assert start.upstream_task_ids == {"find_drops"}
    assert start.partial_kwargs["trigger_dag_id"] == "mailtrace_resend"
    assert start.partial_kwargs["skip_when_already_exists"] is True
    assert start.partial_kwargs["wait_for_completion"] is False
    (watched,) = dag.timetable.asset_condition.objects
    assert watched == drop_queue.RESEND_DROPS
    assert isinstance(watched.watchers[0].trigger, DropQueueTrigger)


# ------------------------------------------------------------------------------ bucket -> queue -> ledger


def test_an_upload_gives_one_dry_run_in_the_ledger_even_when_its_event_comes_twice(
    warehouse_conn, s3_bucket, aws, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")
    subjects = {f"STR-{n:06d}": f"delivered+{n}@example.gov" for n in range(1, 4)}
    with warehouse_conn.transaction():
        for subject_id, email in subjects.items():
            warehouse_conn.execute(
                """INSERT INTO mailtrace.contact (subject_type, subject_id, email)
                   VALUES ('registration', %s, %s)""",
                (subject_id, email),
            )
    queue_url = drop_queue_for(aws, s3_bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_RESEND_DROP_QUEUE_URL", queue_url)
    key = "resend-requests/INC-DROP-1/tax service ids.csv"
    aws.client("s3").put_object(
        Bucket=s3_bucket, Key=key, Body=("id\n" + "\n".join(subjects) + "\n").encode()
    )

    # The asset events' payloads, as the triggerer stores them (S3's test event comes first).
    delivered = watch_until(
        DropQueueTrigger(wait_time_seconds=1), lambda got: "INC-DROP-1" in json.dumps(got)
    )
    upload = next(m for payload in delivered for m in payload["message_batch"] if "INC-DROP-1" in m["Body"])
    # At least once: SQS hands the same event out again.
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=upload["Body"])
    delivered += watch_until(DropQueueTrigger(wait_time_seconds=1), lambda got: len(got) == 1)
    assert in_queue(aws, queue_url) == {"waiting": 0, "hidden": 0}  # each deleted once its event was stored

    triggers = [
        planned
        for payload in delivered
        for planned in plan_drops([SimpleNamespace(extra={"from_trigger": True, "payload": payload})])
    ]
    assert len(triggers) == 2 and triggers[0] == triggers[1]
    # Airflow refuses the second trigger (its run id exists); even run twice, the ledger has one dry run.
    for planned in triggers:
        params = ResendParams.from_mapping(planned["conf"])
        assert plan_resend(params, run_id=planned["trigger_run_id"]) == []
        summary = summarize_run(params, run_id=planned["trigger_run_id"])
        assert (summary["sent"], summary["failed"], summary["claimed"]) == (0, 0, 0)
        assert summary["decisions"]["would_send"] == 3
    run_id = triggers[0]["trigger_run_id"]
    assert warehouse_conn.execute(
        "SELECT dag_run_id, incident_id, dry_run, rows_read, planned FROM mailtrace.resend_run"
    ).fetchall() == [(run_id, "INC-DROP-1", True, 3, 3)]
    assert warehouse_conn.execute("SELECT count(*) FROM mailtrace.resend_request").fetchone() == (0,)
    body = aws.client("s3").get_object(Bucket=s3_bucket, Key=f"resend-outcomes/INC-DROP-1/{run_id}.csv")[
        "Body"
    ]
    rows = list(csv.DictReader(io.StringIO(body.read().decode())))
    assert [(row["subject_id"], row["decision"]) for row in rows] == [(s, "would_send") for s in subjects]


def test_an_upload_set_aside_is_recorded_for_the_health_panel_and_s3s_test_event_is_not(
    monkeypatch, warehouse_conn
):
    from datetime import UTC, datetime, timedelta

    from mailtrace.resend.drop import record_set_aside_drops
    from mailtrace.ui.health import recorded_warnings

    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", BUCKET)
    batch = [
        message({"Event": "s3:TestEvent", "Service": "Amazon S3", "Bucket": BUCKET}),
        message({"Records": [s3_record("resend-requests/INC-7/batch1/ids.csv")]}),  # one folder too deep
        message({"Records": [s3_record("resend-requests/INC-7/ids.csv")]}),
    ]
    handed = []
    (planned,) = plan_drops([SimpleNamespace(extra={"payload": {"message_batch": batch}})], handed.extend)
    assert planned["conf"]["ids_s3_uri"] == f"{PREFIX}INC-7/ids.csv"  # the good one still goes on
    assert [item.what for item in handed] == [f"{PREFIX}INC-7/batch1/ids.csv"]

    record_set_aside_drops(handed)
    now = datetime.now(UTC)
    (warning,) = recorded_warnings(warehouse_conn, now)
    assert (warning["kind"], warning["subject"]) == ("s3_drop_set_aside", f"{PREFIX}INC-7/batch1/ids.csv")
    assert warning["message"] == handed[0].reason
    # An event, not a condition: shown for a week after it was last met, then no longer.
    assert recorded_warnings(warehouse_conn, now + timedelta(days=8)) == []
