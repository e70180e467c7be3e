"""The resend's S3 objects: the uploaded ID list (read) and the outcome CSV (written)."""

from __future__ import annotations

from mailtrace.id_list import (
    IdListError,
)
from mailtrace.resend.constants import _UNSAFE_KEY_CHARS, OUTCOME_PREFIX
from mailtrace.s3 import s3_hook
from mailtrace.settings import required_setting


def read_s3_object(uri: str, *, max_bytes: int) -> bytes:
    """The object's bytes, refusing before download when it is larger than `max_bytes`."""
    hook = s3_hook()
    bucket, key = hook.parse_s3_url(uri)
    head = hook.head_object(key=key, bucket_name=bucket)
    if head is None:
        raise IdListError(f"{uri} does not exist")
    if head["ContentLength"] > max_bytes:
        raise IdListError(
            f"{uri} is {head['ContentLength']:,} bytes; the limit is {max_bytes:,} (split it up)"
        )
    return hook.get_key(key, bucket).get()["Body"].read(max_bytes + 1)


def write_outcome_csv(incident_id: str, run_id: str, content: bytes) -> str:
    """Store the outcome CSV (server-side encrypted) and return its s3:// URI."""
    bucket = required_setting("report_bucket", "the resend outcome CSV")
    key = f"{OUTCOME_PREFIX}/{incident_id}/{_UNSAFE_KEY_CHARS.sub('_', run_id)}.csv"
    s3_hook().load_bytes(content, key=key, bucket_name=bucket, replace=True, encrypt=True)
    return f"s3://{bucket}/{key}"
