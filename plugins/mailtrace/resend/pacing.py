"""One sending rate shared by every chunk and run (`mailtrace.send_pacer`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from mailtrace.paths import read_sql
from mailtrace.resend.constants import PACER_NAME


class Pacer:
    """Spaces provider calls `60 / rate_per_minute` seconds apart across every sender.

    The next free slot lives in `mailtrace.send_pacer` (one line per provider); each call moves it on by
    one interval and sleeps until its own slot, so parallel chunks and concurrent runs add up to the
    requested rate instead of each sending at it. A slot left unused (idle sender) is not saved up as a
    burst.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        rate_per_minute: int,
        *,
        sleep: Callable = time.sleep,
        name: str = PACER_NAME,
    ):
        self._conn = conn
        self.interval = 60.0 / rate_per_minute
        self._sleep = sleep
        self.name = name

    def wait(self) -> None:
        with self._conn.transaction():
            (delay,) = self._conn.execute(
                read_sql("resend/reserve_pacer_slot.sql"),
                {"name": self.name, "interval": self.interval},
            ).fetchone()
        if delay > 0:
            self._sleep(delay)
