"""Seed a warehouse event log and the matching Notify simulator notifications (development only).

Every subject's data comes from its own random generator (seeded with the run's seed and the
subject number), so the output is the same for a given seed and `now`, and any subject can be
regenerated on its own. That lets the seeder stream: one pass COPYs the contacts, a second pass
COPYs the events while handing the provider's side to the simulator in chunks; nothing holds the
whole data set in memory, so a million subjects is fine.

The recipient's address decides what the provider did with each email, exactly as it does for a
live POST to the simulator (devtools.notify_sim.outcomes): `bounce+str000123@example.gov` bounces.

CLI (against a simulator started elsewhere):
    python -m devtools.seed --dsn postgresql://... --sim-url http://127.0.0.1:6011 --subjects 1000
"""

from __future__ import annotations

import argparse
import json
import random
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg

from devtools.notify_sim.outcomes import outcome_for

SUBJECT_TYPE = "registration"
SIM_CHUNK_ROWS = 20_000
# Weights of the fate encoded in a contact's address (the local part before "+").
ADDRESS_OUTCOMES = {
    "delivered": 86,
    "bounce": 5,
    "suppressed": 2,
    "account-suppressed": 1,
    "mailbox-full": 2,
    "content-rejected": 1,
    "tech-fail": 2,
    "stuck": 1,
}
NOTIFICATION_TYPES = {"NOC": 30, "APPROVAL": 25, "RENEWAL_REMINDER": 30, "CANCELLATION": 10, "SUSPENDED": 5}
SUBJECT_LINES = {
    "NOC": "Notice of compliance for registration {subject_id}",
    "APPROVAL": "Registration {subject_id} approved",
    "RENEWAL_REMINDER": "Registration {subject_id} is due for renewal",
    "CANCELLATION": "Registration {subject_id} cancelled",
    "SUSPENDED": "Registration {subject_id} suspended",
}
DOMAINS = ("example.gov", "example.com")
FAILED_SEND_RATE = 0.02  # the app's own send call failed: FAILED, no provider reference
LOST_RATE = 0.01  # the app says SENT but the provider never kept it (not_at_provider)
ADDRESS_CHANGE_RATE = 0.10  # of subjects with a failing address, who since gave a new one
ORPHANS_PER_SUBJECTS = 200  # one provider notification with no event per this many subjects
EVENT_COLUMNS = (
    "event_id",
    "subject_type",
    "subject_id",
    "notification_type",
    "recipient_email",
    "provider",
    "provider_reference",
    "client_reference",
    "sent_at",
    "local_status",
)


class NotificationSink(Protocol):
    def add_notifications(self, rows: list[dict[str, Any]]) -> int: ...


@dataclass(frozen=True)
class Contact:
    subject_id: str
    email: str
    updated_at: datetime
    # The address used before `updated_at`, when the subject changed it.
    previous_email: str | None


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _address(rng: random.Random, fate: str, tag: str) -> str:
    return f"{fate}+{tag}@{rng.choice(DOMAINS)}"


def contact_for(number: int, *, seed: int, now: datetime, weeks: int) -> Contact:
    rng = random.Random(f"{seed}:contact:{number}")
    subject_id = f"STR-{number:06d}"
    tag = subject_id.replace("-", "").lower()
    fate = _weighted(rng, ADDRESS_OUTCOMES)
    email = _address(rng, fate, tag)
    if fate != "delivered" and rng.random() < ADDRESS_CHANGE_RATE:
        changed_at = now - timedelta(days=rng.uniform(0, weeks * 7 / 2))
        return Contact(subject_id, _address(rng, "delivered", f"{tag}.new"), changed_at, email)
    registered_at = now - timedelta(days=weeks * 7 + rng.uniform(1, 365))
    return Contact(subject_id, email, registered_at, None)


def _provider_row(
    rng: random.Random, notification_id: str, event: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The simulator's record of a sent event, timed a little after the app handed it over (the
    caller adds the reference once the event has its id)."""
    outcome = outcome_for(event["recipient_email"])
    created_at = event["sent_at"] + timedelta(seconds=rng.uniform(0.01, 0.5))
    sent_at = created_at + timedelta(seconds=rng.uniform(0.1, 2))
    settled = outcome.settles and outcome.status is not None
    return {
        "id": notification_id,
        "email_address": event["recipient_email"],
        "status": outcome.status or "delivered",
        "created_at": created_at,
        "sent_at": sent_at,
        "completed_at": sent_at + timedelta(seconds=rng.uniform(1, 30)) if settled else None,
        "provider_response": outcome.provider_response,
        "feedback_subtype": outcome.feedback_subtype,
        "subject": SUBJECT_LINES[event["notification_type"]].format(subject_id=event["subject_id"]),
        "body": f"Registration {event['subject_id']}: see your account for details.",
    }


def _subject_events(
    number: int, *, seed: int, now: datetime, weeks: int, provider: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(event without its event_id, provider notification or None) for each email to one subject."""
    contact = contact_for(number, seed=seed, now=now, weeks=weeks)
    rng = random.Random(f"{seed}:events:{number}")
    sent_times = sorted(now - timedelta(days=rng.uniform(0, weeks * 7)) for _ in range(rng.randint(1, 3)))
    for sent_at in sent_times:
        uses_previous = contact.previous_email is not None and sent_at < contact.updated_at
        event = {
            "subject_type": SUBJECT_TYPE,
            "subject_id": contact.subject_id,
            "notification_type": _weighted(rng, NOTIFICATION_TYPES),
            "recipient_email": contact.previous_email if uses_previous else contact.email,
            "provider": provider,
            "provider_reference": None,
            "sent_at": sent_at,
            "local_status": "SENT",
        }
        roll = rng.random()
        if roll < FAILED_SEND_RATE:
            event["local_status"] = "FAILED"
            yield event, None
            continue
        event["provider_reference"] = _uuid(rng)
        # Generated even when lost, so every event consumes the generator the same way.
        provider_row = _provider_row(rng, event["provider_reference"], event, now)
        yield event, None if roll < FAILED_SEND_RATE + LOST_RATE else provider_row


def _orphan(number: int, *, seed: int, now: datetime) -> dict[str, Any]:
    """A provider notification no event explains (sent by hand from Notify's UI, say)."""
    rng = random.Random(f"{seed}:orphan:{number}")
    created_at = now - timedelta(days=rng.uniform(0, 6))
    return {
        "id": _uuid(rng),
        "reference": None,
        "email_address": f"delivered+orphan{number}@example.gov",
        "status": "delivered",
        "created_at": created_at,
        "sent_at": created_at + timedelta(seconds=1),
        "completed_at": created_at + timedelta(seconds=5),
        "subject": "Message sent from the Notify dashboard",
        "body": "",
    }


def seed_event_log(
    conn: psycopg.Connection,
    sim: NotificationSink,
    *,
    subjects: int,
    weeks: int = 4,
    seed: int = 7,
    now: datetime | None = None,
    provider: str = "gc_notify",
) -> dict[str, int]:
    """COPY contacts and events for `subjects` registrations into the warehouse, add the provider's
    notifications to `sim`, and commit. Returns counts of what was written."""
    now = now or datetime.now(UTC)
    counts = dict.fromkeys(("contacts", "events", "sent", "failed", "lost", "orphans", "provider_rows"), 0)
    with conn.cursor() as cursor:
        with cursor.copy(
            "COPY mailtrace.contact (subject_type, subject_id, email, updated_at) FROM STDIN"
        ) as copy:
            for number in range(1, subjects + 1):
                contact = contact_for(number, seed=seed, now=now, weeks=weeks)
                copy.write_row((SUBJECT_TYPE, contact.subject_id, contact.email, contact.updated_at))
                counts["contacts"] += 1

        pending: list[dict[str, Any]] = []

        def flush() -> None:
            counts["provider_rows"] += sim.add_notifications(pending) if pending else 0
            pending.clear()

        with cursor.copy(
            f"COPY mailtrace.notification_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
        ) as copy:
            for number in range(1, subjects + 1):
                for event, provider_row in _subject_events(
                    number, seed=seed, now=now, weeks=weeks, provider=provider
                ):
                    counts["events"] += 1
                    event["event_id"] = event["client_reference"] = f"evt-{counts['events']}"
                    if provider_row is not None:
                        provider_row["reference"] = event["event_id"]
                        pending.append(provider_row)
                    if event["local_status"] == "FAILED":
                        counts["failed"] += 1
                    else:
                        counts["sent"] += 1
                        counts["lost"] += int(provider_row is None)
                    copy.write_row(tuple(event[column] for column in EVENT_COLUMNS))
                    if len(pending) >= SIM_CHUNK_ROWS:
                        flush()
    counts["orphans"] = max(1, subjects // ORPHANS_PER_SUBJECTS) if subjects else 0
    pending.extend(_orphan(number, seed=seed, now=now) for number in range(1, counts["orphans"] + 1))
    flush()
    conn.commit()
    return counts


class SimulatorAdmin:
    """Adds notifications to a simulator running elsewhere, through its /_sim/notifications endpoint."""

    def __init__(self, base_url: str):
        self.url = f"{base_url.rstrip('/')}/_sim/notifications"

    def add_notifications(self, rows: list[dict[str, Any]]) -> int:
        body = json.dumps(rows, default=lambda value: value.isoformat()).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own simulator
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
            return json.load(response)["added"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="warehouse connection string")
    parser.add_argument("--sim-url", required=True, help="base URL of a running Notify simulator")
    parser.add_argument("--subjects", type=int, required=True)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with psycopg.connect(args.dsn) as conn:
        counts = seed_event_log(
            conn, SimulatorAdmin(args.sim_url), subjects=args.subjects, weeks=args.weeks, seed=args.seed
        )
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
