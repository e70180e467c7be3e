"""The per-transaction settings of the bulk statements (load, reconcile) stay inside their transaction."""

from __future__ import annotations

import psycopg
import pytest

from mailtrace.warehouse import tune_bulk_transaction


def _settings(conn) -> tuple[str, str]:
    return conn.execute("SELECT current_setting('jit'), current_setting('work_mem')").fetchone()


def test_bulk_settings_apply_to_the_transaction_only(warehouse_conn):
    warehouse_conn.execute("SET jit = on")
    warehouse_conn.commit()
    before = _settings(warehouse_conn)
    warehouse_conn.commit()
    assert before[0] == "on"

    with warehouse_conn.transaction():
        tune_bulk_transaction(warehouse_conn, work_mem="48MB")
        assert _settings(warehouse_conn) == ("off", "48MB")

    assert _settings(warehouse_conn) == before


def test_bulk_settings_refuse_a_connection_outside_a_transaction(warehouse_dsn):
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            tune_bulk_transaction(conn, work_mem="48MB")
        assert _settings(conn)[1] != "48MB"
