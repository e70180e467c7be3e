"""The throwaway cluster the harness falls back to when no server answers at 127.0.0.1:5432."""

import shutil
import tempfile
from pathlib import Path

import psycopg

from devtools.pgcluster import PgCluster, server_answers


def test_throwaway_cluster_starts_answers_and_stops():
    root = Path(tempfile.mkdtemp(prefix="mailtrace-pgtest-"))
    cluster = PgCluster(root / "data")
    try:
        dsn = cluster.start()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not server_answers(dsn, timeout_seconds=1)
