"""Report constants: the CSV columns of the contract, limits, defaults and S3 prefixes."""

from __future__ import annotations

import re
from datetime import date, timedelta

AWS_CONN_ID = "aws_default"
DEFAULT_TIMEZONE = "America/Vancouver"
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

# A spreadsheet treats a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

MAX_ADHOC_DAYS = 366
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9998, 12, 31)
DEFAULT_ATTACH_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_LINK_EXPIRY_HOURS = 72
# A weekly report emailed this long after its week ended says it is late (a Monday 06:00 run is on time).
LATE_AFTER = timedelta(days=1)
# S3 (SigV4) refuses presigned URLs valid for longer than seven days.
MAX_LINK_EXPIRY_HOURS = 7 * 24
# Rows fetched from the server-side cursor per round trip: the most rows ever held in memory.
FETCH_ROWS = 2_000
# Newly flagged addresses listed in the email body; the rest are counted, not listed.
FLAGGED_LISTED_MAX = 200
# Serialises manifest upserts, so two builds never compute overlapping "newly flagged" windows.
MANIFEST_LOCK = 7_301_004

_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")
