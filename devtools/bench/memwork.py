"""The work whose memory `devtools.bench` measures, one task per process.

`python -m devtools.bench.memwork TASK`

Tasks (settings come from the environment the benchmark sets):
* `idle` imports what the other tasks import and does nothing: the interpreter's own footprint;
* `extract` walks the simulator's list with `mailtrace.notify_extract.extract_list` and loads it;
* `report` builds the weekly failed-notification report with `mailtrace.report.build_report`.
Prints its result as one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta


def _imports() -> None:
    import airflow.providers.amazon.aws.hooks.s3  # noqa: F401
    import airflow.providers.postgres.hooks.postgres  # noqa: F401

    import mailtrace.notify_extract  # noqa: F401
    import mailtrace.report  # noqa: F401


def idle() -> dict:
    _imports()
    return {}


def extract() -> dict:
    import psycopg

    from mailtrace.notify_extract import extract_list
    from mailtrace.providers.gc_notify import NotifyClient

    now = datetime.fromisoformat(os.environ["BENCH_NOW"])
    client = NotifyClient(os.environ["BENCH_NOTIFY_KEY"], os.environ["BENCH_NOTIFY_URL"])
    with psycopg.connect(os.environ["BENCH_DSN"]) as conn:
        return extract_list(conn, client, now=now, initial_lookback=timedelta(days=7))


def report() -> dict:
    from mailtrace.report import build_report, weekly_period

    period = weekly_period(datetime.fromisoformat(os.environ["BENCH_NOW"]))
    return build_report(period, bucket=os.environ["BENCH_BUCKET"], run_id="bench")


TASKS = {"idle": idle, "extract": extract, "report": report}


def main() -> None:
    result = TASKS[sys.argv[1]]()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
