"""The throwaway cluster the harness falls back to when no server answers at 127.0.0.1:5432."""

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

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


def test_unreachable_ancestor_names_the_folder_postgres_cannot_enter():
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to the postgres user")
    root = Path(tempfile.mkdtemp(prefix="mailtrace-reach-"))  # /tmp itself is open to everyone
    try:
        root.chmod(0o755)
        closed = root / "closed"
        (closed / "open").mkdir(parents=True)
        closed.chmod(0o700)
        assert PgCluster.unreachable_ancestor(closed / "open" / "data") == closed
        assert PgCluster.unreachable_ancestor(closed / "not-yet" / "pg" / "data") == closed
        closed.chmod(0o755)
        assert PgCluster.unreachable_ancestor(closed / "open" / "data") is None
        # A fresh clone: the cluster's folders do not exist until the cluster is first started.
        assert PgCluster.unreachable_ancestor(closed / "not-yet" / "pg" / "data") is None
    finally:
        shutil.rmtree(root, ignore_errors=True)
