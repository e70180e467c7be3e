"""The Notify simulator, exercised through the official notifications_python_client over real HTTP."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from notifications_python_client.errors import HTTP503Error, HTTPError, InvalidResponse
from notifications_python_client.notifications import NotificationsAPIClient

from devtools.notify_sim.outcomes import ACCOUNT_SUPPRESSION_TEXT, PROVIDER_SUPPRESSION_TEXT
from devtools.notify_sim.server import UNKNOWN_STATUS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE_ID = "2b5b9a36-1d0c-4a39-8e11-3d9e0c7f5a10"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
NOTIFICATION_FIELDS = {
    "id",
    "reference",
    "email_address",
    "phone_number",
    "line_1",
    "line_2",
    "line_3",
    "line_4",
    "line_5",
    "line_6",
    "postcode",
    "type",
    "status",
    "status_description",
    "provider_response",
    "template",
    "body",
    "subject",
    "created_at",
    "created_by_name",
    "sent_at",
    "completed_at",
    "scheduled_for",
    "postage",
}


def send(client: NotificationsAPIClient, address: str, **kwargs) -> str:
    return client.send_email_notification(address, TEMPLATE_ID, **kwargs)["id"]


def seed(sim, count: int, *, start: datetime | None = None, step=timedelta(seconds=1), **fields) -> list[str]:
    """Add `count` delivered notifications one `step` apart; returns their ids oldest first."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "email_address": f"person{index}@example.gov",
            "status": "delivered",
            "created_at": start + index * step,
            **fields,
        }
        for index in range(count)
    ]
    sim.add_notifications(rows)
    return [row["id"] for row in rows]


def error_of(raised: pytest.ExceptionInfo) -> dict:
    return raised.value.response.json()["errors"][0]


# ----------------------------------------------------------------------------------- send and get


def test_post_then_get_by_id_returns_notify_fields(notify_sim, notify_client):
    sent = notify_client.send_email_notification(
        "person@example.gov",
        TEMPLATE_ID,
        personalisation={"subject": "Your registration", "body": "It was approved."},
        reference="evt-1",
    )
    assert sent["reference"] == "evt-1"
    assert sent["content"]["subject"] == "Your registration"
    assert sent["content"]["body"] == "It was approved."
    assert sent["template"]["id"] == TEMPLATE_ID
    assert sent["uri"] == f"{notify_sim.base_url}/v2/notifications/{sent['id']}"
    assert sent["scheduled_for"] is None

    fetched = notify_client.get_notification_by_id(sent["id"])
    assert set(fetched) == NOTIFICATION_FIELDS
    assert fetched["id"] == sent["id"]
    assert fetched["email_address"] == "person@example.gov"
    assert fetched["type"] == "email"
    assert fetched["status"] == "delivered"
    assert fetched["status_description"] == "Delivered"
    assert fetched["subject"] == "Your registration"
    assert fetched["body"] == "It was approved."
    for name in ("created_at", "sent_at", "completed_at"):
        assert TIMESTAMP.match(fetched[name]), name
    assert fetched["phone_number"] is None and fetched["postage"] is None


def test_sent_requests_record_accepted_posts_in_order(notify_sim, notify_client):
    first = send(notify_client, "a@example.gov", reference="r1")
    second = send(notify_client, "b@example.gov", personalisation={"subject": "S"})
    assert notify_sim.sent_requests() == [
        {"email_address": "a@example.gov", "template_id": TEMPLATE_ID, "reference": "r1", "id": first},
        {
            "email_address": "b@example.gov",
            "template_id": TEMPLATE_ID,
            "personalisation": {"subject": "S"},
            "id": second,
        },
    ]
    assert notify_sim.stats()["posts_accepted"] == 2


@pytest.mark.parametrize(
    ("local_part", "status", "description", "provider_response"),
    [
        ("delivered", "delivered", "Delivered", None),
        ("bounce", "permanent-failure", "No such address", None),
        ("suppressed", "permanent-failure", "Blocked", PROVIDER_SUPPRESSION_TEXT),
        ("account-suppressed", "permanent-failure", "Blocked", ACCOUNT_SUPPRESSION_TEXT),
        ("mailbox-full", "temporary-failure", "Content or inbox issue", None),
        ("content-rejected", "temporary-failure", "Content or inbox issue", None),
        ("tech-fail", "technical-failure", "Tech issue", None),
        ("stuck", "sending", "In transit", None),
        ("someone.unknown", "delivered", "Delivered", None),
    ],
)
def test_outcome_follows_the_recipient_local_part(
    notify_client, local_part, status, description, provider_response
):
    notification = notify_client.get_notification_by_id(send(notify_client, f"{local_part}+7@example.gov"))
    assert notification["status"] == status
    assert notification["status_description"] == description
    assert notification["provider_response"] == provider_response
    assert (notification["completed_at"] is None) == (status == "sending")


def test_lost_notification_gets_an_id_but_is_never_found(notify_sim, notify_client):
    notification_id = send(notify_client, "lost+1@example.gov")
    with pytest.raises(HTTPError) as raised:
        notify_client.get_notification_by_id(notification_id)
    assert raised.value.status_code == 404
    assert error_of(raised) == {"error": "NoResultFound", "message": "No result found"}
    assert notify_client.get_all_notifications()["notifications"] == []
    assert [r["id"] for r in notify_sim.sent_requests()] == [notification_id]


def test_notification_is_in_transit_until_it_settles(notify_sim, notify_client):
    notify_sim.configure(settle_seconds=3600)
    notification_id = send(notify_client, "bounce@example.gov")
    pending = notify_client.get_notification_by_id(notification_id)
    assert pending["status"] == "sending"
    assert pending["status_description"] == "In transit"
    assert pending["completed_at"] is None
    assert notify_client.get_all_notifications(status="permanent-failure")["notifications"] == []

    notify_sim.set_status(notification_id, "permanent-failure", feedback_subtype="suppressed")
    settled = notify_client.get_notification_by_id(notification_id)
    assert settled["status"] == "permanent-failure"
    assert settled["status_description"] == "Blocked"
    assert TIMESTAMP.match(settled["completed_at"])


def test_set_status_on_unknown_notification_raises(notify_sim):
    with pytest.raises(KeyError):
        notify_sim.set_status(str(uuid.uuid4()), "delivered")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("not-an-address", "email_address Not a valid email address"),
        ("two@@example.gov", "email_address Not a valid email address"),
    ],
)
def test_bad_email_address_is_a_validation_error(notify_sim, notify_client, address, message):
    with pytest.raises(HTTPError) as raised:
        notify_client.send_email_notification(address, TEMPLATE_ID)
    assert raised.value.status_code == 400
    assert error_of(raised) == {"error": "ValidationError", "message": message}
    assert notify_sim.sent_requests() == []


def test_bad_template_id_and_bad_notification_id_are_validation_errors(notify_client):
    with pytest.raises(HTTPError) as raised:
        notify_client.send_email_notification("person@example.gov", "not-a-uuid")
    assert raised.value.status_code == 400
    assert error_of(raised)["message"] == "template_id is not a valid UUID"
    with pytest.raises(HTTPError) as raised:
        notify_client.get_notification_by_id("1234-not-a-uuid")
    assert raised.value.status_code == 400
    assert error_of(raised)["message"] == "notification_id is not a valid UUID"


# ------------------------------------------------------------------------------------- listing


def test_list_pages_newest_first_with_next_links_until_an_empty_page(notify_sim, notify_client):
    ids = seed(notify_sim, 260)
    newest_first = ids[::-1]

    first = notify_client.get_all_notifications()
    assert [n["id"] for n in first["notifications"]] == newest_first[:250]
    assert first["links"]["current"] == f"{notify_sim.base_url}/v2/notifications"
    assert first["links"]["next"] == f"{notify_sim.base_url}/v2/notifications?older_than={newest_first[249]}"

    second = notify_client.get_all_notifications(older_than=newest_first[249])
    assert [n["id"] for n in second["notifications"]] == newest_first[250:]
    assert second["links"]["next"].endswith(f"older_than={newest_first[-1]}")

    last = notify_client.get_all_notifications(older_than=newest_first[-1])
    assert last["notifications"] == []
    assert "next" not in last["links"]


def test_iterator_sees_every_notification_including_same_microsecond_ones(notify_sim, notify_client):
    ids = seed(notify_sim, 300, step=timedelta(0))  # all created in the same microsecond
    seen = [n["id"] for n in notify_client.get_all_notifications_iterator()]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 300


def test_page_size_is_configurable(notify_sim, notify_client):
    seed(notify_sim, 5)
    notify_sim.configure(page_size=2)
    assert len(notify_client.get_all_notifications()["notifications"]) == 2
    assert len(list(notify_client.get_all_notifications_iterator())) == 5


def test_status_filter_accepts_several_values_and_the_failed_alias(notify_client):
    delivered = send(notify_client, "delivered@example.gov")
    bounced = send(notify_client, "bounce@example.gov")
    full = send(notify_client, "mailbox-full@example.gov")
    broken = send(notify_client, "tech-fail@example.gov")

    def ids(**filters):
        return {n["id"] for n in notify_client.get_all_notifications(**filters)["notifications"]}

    assert ids(status="delivered") == {delivered}
    assert ids(status=["permanent-failure", "temporary-failure"]) == {bounced, full}
    assert ids(status="failed") == {bounced, full, broken}
    assert ids(template_type="sms") == set()
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications(status="not-a-status")
    assert raised.value.status_code == 400


def test_reference_filter_and_links_keep_the_filters(notify_sim, notify_client):
    wanted = send(notify_client, "a@example.gov", reference="evt-42")
    send(notify_client, "b@example.gov", reference="evt-43")
    result = notify_client.get_all_notifications(reference="evt-42", status="delivered")
    assert [n["id"] for n in result["notifications"]] == [wanted]
    assert result["links"]["next"] == (
        f"{notify_sim.base_url}/v2/notifications?status=delivered&reference=evt-42&older_than={wanted}"
    )


def test_retention_hides_old_notifications_from_list_and_get(notify_sim, notify_client):
    now = datetime.now(UTC)
    (old,) = seed(notify_sim, 1, start=now - timedelta(days=8))
    (recent,) = seed(notify_sim, 1, start=now - timedelta(days=6))

    assert [n["id"] for n in notify_client.get_all_notifications()["notifications"]] == [recent]
    assert notify_client.get_notification_by_id(recent)["id"] == recent
    with pytest.raises(HTTPError) as raised:
        notify_client.get_notification_by_id(old)
    assert raised.value.status_code == 404

    notify_sim.configure(retention_days=30)
    assert notify_client.get_notification_by_id(old)["id"] == old


def test_seeded_rows_keep_their_detail_fields(notify_sim, notify_client):
    created = datetime(2026, 1, 5, 9, 30, 0, 123456, tzinfo=UTC)
    notify_sim.configure(retention_days=100_000)
    notify_sim.add_notifications(
        [
            {
                "id": "0b7c7bb0-58e5-4a55-9a24-0a7f0b0e3c01",
                "email_address": "someone@example.com",
                "status": "permanent-failure",
                "created_at": created,
                "sent_at": created + timedelta(seconds=1),
                "reference": "evt-9",
                "provider_response": "550 5.1.1 user unknown",
                "feedback_subtype": "no-email",
                "subject": "Renewal",
                "body": "Please renew.",
            }
        ]
    )
    got = notify_client.get_notification_by_id("0b7c7bb0-58e5-4a55-9a24-0a7f0b0e3c01")
    assert got["created_at"] == "2026-01-05T09:30:00.123456Z"
    assert got["sent_at"] == "2026-01-05T09:30:01.123456Z"
    assert got["completed_at"] == got["sent_at"]
    assert got["status_description"] == "No such address"
    assert got["provider_response"] == "550 5.1.1 user unknown"
    assert (got["reference"], got["subject"], got["body"]) == ("evt-9", "Renewal", "Please renew.")


# ------------------------------------------------------------------------------ auth and limits


def test_wrong_secret_or_service_is_rejected_with_403(notify_sim, notify_client):
    wrong_secret = f"mailtrace_sim-{notify_sim.service_id}-{uuid.uuid4()}"
    wrong_service = f"mailtrace_sim-{uuid.uuid4()}-{notify_sim.api_key[-36:]}"
    for key in (wrong_secret, wrong_service):
        client = NotificationsAPIClient(key, base_url=notify_sim.base_url)
        with pytest.raises(HTTPError) as raised:
            client.get_all_notifications()
        assert raised.value.status_code == 403
        assert error_of(raised)["error"] == "AuthError"


def test_missing_token_is_rejected(notify_sim):
    response = requests.get(f"{notify_sim.base_url}/v2/notifications", timeout=10)
    assert response.status_code == 401
    assert response.json()["errors"][0]["error"] == "AuthError"


def test_rate_limit_answers_429_with_retry_after(notify_sim, notify_client):
    notify_sim.configure(rate_limit_per_minute=3, retry_after_seconds=7)
    for _ in range(3):
        notify_client.get_all_notifications()
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications()
    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert error_of(raised) == {
        "error": "RateLimitError",
        "message": "Exceeded rate limit for key type LIVE of 3 requests per 60 seconds",
    }
    assert notify_sim.stats()["rate_limited"] == 1


def test_logs_never_contain_the_secret(notify_sim, notify_client, caplog):
    caplog.set_level(logging.DEBUG)
    send(notify_client, "a@example.gov")
    notify_client.get_all_notifications()
    assert caplog.records, "the simulator should have logged its requests"
    secret = notify_sim.api_key[-36:]
    assert secret not in caplog.text
    assert secret not in repr(notify_sim)


# ---------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_fault_answers_that_status_once(notify_sim, notify_client, status):
    notify_sim.add_fault("status", status=status, retry_after=4)
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications()
    assert raised.value.status_code == status
    assert raised.value.response.headers["Retry-After"] == "4"
    assert isinstance(raised.value, HTTP503Error) == (status == 503)
    assert notify_client.get_all_notifications()["notifications"] == []
    assert notify_sim.stats()["faults_served"] == 1


def test_429_fault_looks_like_notify_rate_limiting(notify_sim, notify_client):
    notify_sim.add_fault("status", status=429, retry_after=2)
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications()
    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "2"
    assert error_of(raised)["error"] == "RateLimitError"
    assert notify_sim.stats()["rate_limited"] == 1


@pytest.mark.parametrize("kind", ["truncated_json", "malformed_json"])
def test_broken_body_faults_give_undecodable_200s(notify_sim, notify_client, kind):
    seed(notify_sim, 3)
    notify_sim.add_fault(kind)
    with pytest.raises(InvalidResponse):
        notify_client.get_all_notifications()
    assert len(notify_client.get_all_notifications()["notifications"]) == 3


def test_reset_fault_closes_the_connection_without_an_answer(notify_sim, notify_client):
    notify_sim.add_fault("reset")
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications()
    assert raised.value.response is None  # no HTTP answer at all; the client reports it as 503
    assert raised.value.status_code == 503
    assert notify_client.get_all_notifications()["notifications"] == []


def test_delay_fault_holds_the_answer(notify_sim):
    notify_sim.add_fault("delay", delay_seconds=3)
    impatient = NotificationsAPIClient(notify_sim.api_key, base_url=notify_sim.base_url, timeout=0.3)
    with pytest.raises(HTTPError) as raised:
        impatient.get_all_notifications()
    assert raised.value.response is None  # timed out waiting
    assert impatient.get_all_notifications()["notifications"] == []


def test_loop_next_fault_links_back_to_the_same_page(notify_sim, notify_client):
    ids = seed(notify_sim, 5)
    notify_sim.add_fault("loop_next")
    looped = notify_client.get_all_notifications(older_than=ids[-1])
    assert looped["links"]["next"] == looped["links"]["current"]
    assert notify_client.get_all_notifications(older_than=ids[-1])["links"]["next"].endswith(ids[0])


def test_drop_field_and_unknown_status_faults_corrupt_notifications(notify_sim, notify_client):
    notification_id = send(notify_client, "a@example.gov")
    notify_sim.add_fault("drop_field")
    notify_sim.add_fault("unknown_status", count=2)
    assert "status" not in notify_client.get_notification_by_id(notification_id)
    assert notify_client.get_notification_by_id(notification_id)["status"] == UNKNOWN_STATUS
    assert notify_client.get_all_notifications()["notifications"][0]["status"] == UNKNOWN_STATUS
    assert notify_client.get_notification_by_id(notification_id)["status"] == "delivered"


def test_faults_follow_path_prefix_count_and_order(notify_sim, notify_client):
    notify_sim.add_fault("status", status=502, path_prefix="/v2/notifications/email", count=2)
    notify_sim.add_fault("status", status=500)
    with pytest.raises(HTTPError) as raised:
        notify_client.get_all_notifications()
    assert raised.value.status_code == 500  # the list is not under the first fault's prefix
    statuses = []
    for _ in range(3):
        try:
            send(notify_client, "a@example.gov")
            statuses.append(201)
        except HTTPError as error:
            statuses.append(error.status_code)
    assert statuses == [502, 502, 201]
    assert notify_sim.stats()["faults_served"] == 3


def test_unknown_fault_kind_is_refused(notify_sim):
    with pytest.raises(ValueError, match="unknown fault kind"):
        notify_sim.add_fault("gremlins")


# ------------------------------------------------------------------------- admin, reset and CLI


def test_admin_endpoints_drive_the_simulator_without_auth(notify_sim, notify_client):
    base = f"{notify_sim.base_url}/_sim"
    row = {
        "id": str(uuid.uuid4()),
        "email_address": "x@example.gov",
        "status": "temporary-failure",
        "created_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    assert requests.post(f"{base}/notifications", json=[row], timeout=10).json() == {"added": 1}
    assert notify_client.get_notification_by_id(row["id"])["status"] == "temporary-failure"

    assert requests.post(f"{base}/faults", json={"kind": "status", "status": 503}, timeout=10).ok
    with pytest.raises(HTTP503Error):
        notify_client.get_all_notifications()

    sent_id = send(notify_client, "y@example.gov")
    assert [r["id"] for r in requests.get(f"{base}/sent", timeout=10).json()] == [sent_id]
    assert requests.get(f"{base}/stats", timeout=10).json() == {
        "requests": 3,
        "rate_limited": 0,
        "posts_accepted": 1,
        "faults_served": 1,
    }

    assert requests.post(f"{base}/reset", timeout=10).ok
    assert notify_client.get_all_notifications()["notifications"] == []
    assert notify_sim.sent_requests() == []


def test_reset_forgets_notifications_faults_and_counters(notify_sim, notify_client):
    send(notify_client, "a@example.gov")
    notify_sim.add_fault("status", status=500)
    notify_sim.reset()
    assert notify_client.get_all_notifications()["notifications"] == []  # the fault is gone too
    assert notify_sim.stats() == {"requests": 1, "rate_limited": 0, "posts_accepted": 0, "faults_served": 0}


def test_cli_serves_until_sigterm(tmp_path):
    service_id, secret = str(uuid.uuid4()), str(uuid.uuid4())
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.notify_sim", "--port", "0", "--db", str(tmp_path / "cli.sqlite")]
        + ["--service-id", service_id, "--secret", secret],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().split(": ", 1)[1].strip()
        api_key = process.stdout.readline().split(": ", 1)[1].strip()
        assert api_key == f"mailtrace_sim-{service_id}-{secret}"
        client = NotificationsAPIClient(api_key, base_url=base_url)
        assert client.get_notification_by_id(send(client, "a@example.gov"))["status"] == "delivered"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert secret not in stderr
