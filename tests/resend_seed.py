"""Resend runs made by the real resend code (plan, send through the Notify simulator, summarize), for the
Delivery page's resend section tests: two incidents, a dry run and a real run of the same list, and a dry run
started the way an S3 drop starts one (an asset-triggered run id).
"""

from __future__ import annotations

import uuid

from mailtrace.resend import ResendParams, plan_resend, send_chunk, summarize_run

INCIDENT = "INC-2026-031"
OLDER_INCIDENT = "INC-2026-007"
DRY_RUN_ID = "manual__2026-12-01T10:00:00+00:00"
REAL_RUN_ID = "manual__2026-12-01T11:00:00+00:00"
DROP_RUN_ID = "s3drop__INC-2026-007__0f3c2a9b7d1e4f5a6b7c"  # as mailtrace_resend_drop names its dry runs
CONTACTS = {
    "STR-000101": "first.person@example.gov",
    "STR-000102": "second.person@example.gov",
    "STR-000103": "third.person@example.gov",
    "STR-000104": "",  # no address on file
}
# 7 rows: 3 to send, a duplicate, a malformed id, an id nobody has, a contact without an address.
ID_LIST = (
    b"registration_number\nSTR-000101\nSTR-000102\nSTR-000103\nSTR-000101\nSTR-12\nSTR-000999\nSTR-000104\n"
)


def configure(monkeypatch, bucket: str) -> None:
    """The Variables a resend reads (production: no allow-list)."""
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_REPORT_BUCKET", bucket)
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_NOTIFY_TEMPLATE_ID", str(uuid.uuid4()))
    monkeypatch.setenv("AIRFLOW_VAR_MAILTRACE_ENVIRONMENT", "production")


def _run(params: ResendParams, run_id: str) -> dict:
    for chunk in plan_resend(params, run_id=run_id):
        send_chunk(params, run_id=run_id, chunk_index=chunk["chunk_index"])
    return summarize_run(params, run_id=run_id)


def seed(conn, s3_client, bucket: str) -> dict[str, dict]:
    """Run the resends; return each run's summary (what `summarize` returned) by run id."""
    with conn.transaction():
        for subject_id, email in CONTACTS.items():
            conn.execute(
                "INSERT INTO mailtrace.contact (subject_type, subject_id, email) "
                "VALUES ('registration', %s, %s)",
                (subject_id, email),
            )
    summaries = {}
    # The older incident: a list dropped in S3 started a dry run.
    key = f"resend-requests/{OLDER_INCIDENT}/ids.csv"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"STR-000101\nSTR-000102\nnot-an-id\n")
    params = ResendParams(
        incident_id=OLDER_INCIDENT, id_type="registration", ids_s3_uri=f"s3://{bucket}/{key}"
    )
    summaries[DROP_RUN_ID] = _run(params, DROP_RUN_ID)
    # The newer incident: a dry run, then the real run of the same list.
    key = f"resend-requests/{INCIDENT}/ids.csv"
    s3_client.put_object(Bucket=bucket, Key=key, Body=ID_LIST)
    values = {"incident_id": INCIDENT, "id_type": "registration", "ids_s3_uri": f"s3://{bucket}/{key}"}
    summaries[DRY_RUN_ID] = _run(ResendParams(**values, dry_run=True), DRY_RUN_ID)
    summaries[REAL_RUN_ID] = _run(ResendParams(**values, dry_run=False), REAL_RUN_ID)
    return summaries
