"""Report constants: the CSV columns of the contract, limits, defaults and S3 prefixes."""

from __future__ import annotations

from datetime import date, timedelta

from mailtrace.s3 import AWS_CONN_ID  # noqa: F401  (the UI imports it from mailtrace.report)
from mailtrace.settings import REGISTRY

DEFAULT_TIMEZONE = REGISTRY["timezone"].default
KEY_PREFIX = "failed-notifications/"


# CONTRACT.md §4, in file order. The subject id column's header is a setting (default below).
SUBJECT_ID_COLUMN = "registration_number"
CSV_COLUMNS = (
    "date_sent",
    "notification_type",
    "delivery_status",
    "failure_reason",
    SUBJECT_ID_COLUMN,
    "subject_type",
    "recipient_email",
    "event_id",
    "provider_reference",
    "delivery_detail",
)

MAX_ADHOC_DAYS = 366
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9998, 12, 31)
# A weekly report emailed this long after its week ended says it is late (a Monday 06:00 run is on time).
LATE_AFTER = timedelta(days=1)
MAX_LINK_EXPIRY_HOURS = REGISTRY["report_link_expiry_hours"].maximum
# Rows fetched from the server-side cursor per round trip: the most rows ever held in memory.
FETCH_ROWS = 2_000
# Newly flagged addresses listed in the email under each heading (what to do); the rest are counted.
FLAGGED_LISTED_PER_GROUP = 10
