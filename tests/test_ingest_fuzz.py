"""Fuzz the two provider intakes: hostile SES queue messages and hostile Notify notifications.

A seeded generator (MAILTRACE_FUZZ_SEED to replay another) throws random bytes, deep nesting, huge fields,
wrong types, bad times and odd Unicode (NUL, lone surrogates, RTL marks, emoji, combining characters,
zero-width joiners, a BOM) at the SES drain through moto's SQS and at the Notify list extract and id
look-ups through the simulator, into a real warehouse. Whatever comes in: no exception escapes, every item
ends stored or set aside (count in = stored + set aside), and the queue drains.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import ses_payloads as payloads
from test_notify_pipeline import add_event, sim_row
from test_ses_ingest import queue_depth

from mailtrace.notify_extract import WATERMARK_STATE
from mailtrace.pipeline import run_notify_list_extract, run_notify_lookups
from mailtrace.providers.ses import parse_sqs_body
from mailtrace.ses_ingest import drain_queue
from mailtrace.warehouse import get_state

SEEDS = [int(os.environ["MAILTRACE_FUZZ_SEED"])] if os.environ.get("MAILTRACE_FUZZ_SEED") else [17, 2026]
SES_MESSAGES = 60
NOTIFY_NOTIFICATIONS = 50
ODD_PIECES = (
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "e\u0301\u0301\u0301",  # combining accents
    "\U0001f4e7\U0001f600",
    "\\",
    '"',
    "'; DROP TABLE mailtrace.provider_event; --",
    "<someone.hidden@example.gov>",
    "\r\n",
    "%s %(x)s {0}",
)
STATUS_WORDS = ("delivered", "permanent-failure", "temporary-failure", "sending", "technical-failure")
# What a time field can be turned into: no zone, far future, garbage, the wrong type.
BAD_TIMES = ("2026-12-01T10:00:00", "2099-01-01T00:00:00Z", "yesterday", "", 17, None, ["2026"], {"t": 1})


FIGURES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if os.environ.get("MAILTRACE_RELIABILITY_FIGURES") == "1":
        print(f"\n[figures] fuzzed intake: {dict(FIGURES)}")  # noqa: T201


class Hostile:
    """Random hostile values from one seeded generator."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def text(self) -> str:
        parts = [self.rng.choice(ODD_PIECES) for _ in range(self.rng.randint(1, 12))]
        parts.insert(self.rng.randint(0, len(parts)), uuid.UUID(int=self.rng.getrandbits(128)).hex[:8])
        return "".join(parts)

    def huge(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz@.é\U0001f600\u0301"
        size = self.rng.randint(3_000, 30_000)
        return "".join(self.rng.choice(alphabet) for _ in range(size))

    def deep(self) -> Any:
        depth = self.rng.randint(50, 400)  # JSON-encodable; the SES cases add far deeper text below
        value: Any = "bottom"
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"k": value}
        return value

    def value(self) -> Any:
        kind = self.rng.choice(("text", "huge", "deep", "type", "time", "empty"))
        if kind == "text":
            return self.text()
        if kind == "huge":
            return self.huge()
        if kind == "deep":
            return self.deep()
        if kind == "type":
            return self.rng.choice((0, -1, 1e308, True, None, [], {}, [self.text()], {"x": self.text()}))
        if kind == "time":
            return self.rng.choice(BAD_TIMES)
        return ""

    def mutate(self, document: Any, times: int) -> Any:
        """`document` with `times` values somewhere in it replaced by hostile ones."""
        for _ in range(times):
            path = self._random_path(document)
            if not path:
                continue
            target = document
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = self.value()
        return document

    def _random_path(self, document: Any) -> list:
        path: list = []
        node = document
        while isinstance(node, dict | list) and node:
            key = self.rng.choice(list(node)) if isinstance(node, dict) else self.rng.randrange(len(node))
            path.append(key)
            node = node[key]
            if self.rng.random() < 0.3:
                break
        return path

    def random_body(self) -> str:
        """Random bytes as SQS would carry them (SQS allows no control characters or surrogates)."""
        raw = bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 400)))
        text = raw.decode("utf-8", errors="replace")
        return (
            "".join(c for c in text if c in "\t\n\r" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd")
            or "x"
        )


def ses_bodies(hostile: Hostile, count: int) -> list[str]:
    rng = hostile.rng
    builders = (
        lambda ref, to: payloads.delivery(ref, to),
        lambda ref, to: payloads.bounce(ref, to, subtype=rng.choice(("General", "NoEmail", "Suppressed"))),
        lambda ref, to: payloads.complaint(ref, to),
        lambda ref, to: payloads.delivery_delay(ref, to),
        lambda ref, to: payloads.send(ref, to),
        lambda ref, to: payloads.reject(ref, to),
        lambda ref, to: payloads.open_event(ref, to),
    )
    bodies = []
    for n in range(count):
        kind = rng.choice(("mutated", "mutated", "mutated", "valid", "bytes", "deep", "truncated"))
        record = rng.choice(builders)(
            f"fuzz-{n}-{rng.getrandbits(32):x}", [f"p{n}.{rng.getrandbits(16)}@example.com"]
        )
        if kind == "mutated":
            record = hostile.mutate(record, rng.randint(1, 4))
        body = json.dumps(record)  # ASCII with \u escapes, as SNS delivers lone surrogates and NUL
        if kind != "bytes" and rng.random() < 0.5:
            body = payloads.sns_envelope(body)
        if kind == "bytes":
            body = hostile.random_body()
        elif kind == "deep":
            depth = rng.randint(2_000, 100_000)
            body = body[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
        elif kind == "truncated":
            body = body[: rng.randint(1, len(body) - 1)]
        bodies.append(body)
    return bodies


@pytest.fixture
def queue_url(aws):
    return aws.client("sqs").create_queue(QueueName=f"mailtrace-fuzz-{uuid.uuid4().hex[:10]}")["QueueUrl"]


@pytest.mark.parametrize("seed", SEEDS)
def test_ses_drain_stores_or_sets_aside_every_hostile_message(
    warehouse_conn, aws, s3_bucket, queue_url, seed
):
    bodies = ses_bodies(Hostile(seed), SES_MESSAGES)
    sqs = aws.client("sqs")
    sent_ids = {sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]: body for body in bodies}

    result = drain_queue(warehouse_conn, queue_url=queue_url, bucket=s3_bucket, wait_seconds=0)

    assert queue_depth(aws, queue_url) == 0
    assert result["messages"] == result["deleted"] == SES_MESSAGES
    dead = {
        row[0]: bytes(row[1])
        for row in warehouse_conn.execute("SELECT message_id, raw FROM mailtrace.ses_dead_letter").fetchall()
    }
    stored_keys = set(
        warehouse_conn.execute(
            "SELECT provider_reference, recipient_email, raw_status, event_at FROM mailtrace.provider_event"
        ).fetchall()
    )
    warehouse_conn.commit()
    stored = 0
    for message_id, body in sent_ids.items():
        if message_id in dead:
            assert dead[message_id] == body.encode("utf-8")  # set aside whole
            continue
        events = parse_sqs_body(body)  # it was not set aside, so it parses: its observations are stored
        assert {
            (e.provider_reference, e.recipient_email, e.raw_status, e.event_at) for e in events
        } <= stored_keys
        stored += 1
    assert stored + len(dead) == SES_MESSAGES
    assert result["poison"] == len(dead) > 0
    assert stored > 0
    FIGURES.update(ses_messages=SES_MESSAGES, ses_stored=stored, ses_set_aside=len(dead))


def notify_patches(hostile: Hostile, rows: list[dict]) -> dict[str, dict]:
    fields = (
        "id",
        "status",
        "created_at",
        "sent_at",
        "completed_at",
        "email_address",
        "reference",
        "provider_response",
        "status_description",
        "feedback_subtype",
        "feedback_reason",
        "template",
        "extra_field",
    )
    patches = {}
    for row in rows:
        if hostile.rng.random() < 0.2:
            continue  # served as stored
        chosen = hostile.rng.sample(fields, hostile.rng.randint(1, 4))
        patch = {name: hostile.value() for name in chosen}
        if patch.get("status") == "":
            patch["status"] = hostile.rng.choice(STATUS_WORDS)
        patches[row["id"]] = patch
    return patches


def accounted(conn, source: str) -> tuple[int, int]:
    """(notifications stored from `source`, notifications set aside)."""
    (stored,) = conn.execute(
        "SELECT count(DISTINCT provider_reference) FROM mailtrace.provider_event WHERE source = %s", (source,)
    ).fetchone()
    (set_aside,) = conn.execute("SELECT count(*) FROM mailtrace.notify_quarantine").fetchone()
    conn.commit()
    return stored, set_aside


@pytest.mark.parametrize("seed", SEEDS)
def test_notify_extract_and_lookups_store_or_set_aside_every_hostile_notification(
    warehouse_conn, notify_sim, seed
):
    hostile = Hostile(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        sim_row(
            status=hostile.rng.choice(STATUS_WORDS),
            created_at=now - timedelta(hours=3, minutes=n),
            reference=f"ref-{n}",
        )
        for n in range(NOTIFY_NOTIFICATIONS)
    ]
    notify_sim.add_notifications(rows)
    patches = notify_patches(hostile, rows)
    notify_sim.add_fault("patch", count=1000, patches=patches)

    listed = run_notify_list_extract()

    stored, set_aside = accounted(warehouse_conn, "notify_list")
    assert stored + set_aside == NOTIFY_NOTIFICATIONS == listed["notifications"] + listed["quarantined"]
    assert set_aside == listed["quarantined"] > 0
    watermark = datetime.fromisoformat(get_state(warehouse_conn, WATERMARK_STATE))
    warehouse_conn.commit()
    assert watermark <= now  # no hostile time moved it into the future

    # The same notifications asked for one by one (logged emails still without a verdict).
    for n, row in enumerate(rows):
        add_event(warehouse_conn, f"fuzz-{n}", provider_reference=row["id"], sent_at=row["created_at"])
    looked_up = run_notify_lookups()

    assert looked_up["checked"] == NOTIFY_NOTIFICATIONS and looked_up["missing"] == 0
    assert looked_up["quarantined"] == listed["quarantined"]
    # Met again by the look-ups: the same rows, each seen twice; and the list already stored the rest.
    sightings = warehouse_conn.execute("SELECT times_seen FROM mailtrace.notify_quarantine").fetchall()
    assert sorted(sightings) == [(2,)] * listed["quarantined"]
    assert looked_up["inserted"] == 0
    FIGURES.update(
        notify_notifications=NOTIFY_NOTIFICATIONS,
        notify_patched=len(patches),
        notify_stored=listed["notifications"],
        notify_set_aside=listed["quarantined"],
    )
