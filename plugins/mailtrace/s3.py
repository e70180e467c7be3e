"""The one way mailtrace reaches S3: Airflow's S3Hook on connection `aws_default`."""

from __future__ import annotations

from typing import Any

AWS_CONN_ID = "aws_default"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key` (key may be empty or a prefix); no I/O, no hook."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_hook(*, content_type: str | None = None) -> Any:
    """An S3Hook on `aws_default`; `content_type` is set on every object it uploads.

    Imported here rather than at module top so modules that only sometimes touch S3 import cheaply.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    extra_args = {"ContentType": content_type} if content_type else None
    return S3Hook(aws_conn_id=AWS_CONN_ID, extra_args=extra_args)
