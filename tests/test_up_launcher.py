"""`make up` / `make down` refuse clearly what they cannot do, before starting anything; a restarted
process leaves nothing of its earlier run behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from devtools.up import (
    PID_FILE_NAME,
    AirflowStack,
    ManagedProcess,
    StackError,
    StackSettings,
    down,
    up,
    worker_hostname,
)
from tests.airflow_stack import wait_for


def test_a_second_make_up_says_one_is_running(tmp_path, capsys):
    (tmp_path / PID_FILE_NAME).write_text(json.dumps({"pid": os.getpid(), "ui": "http://127.0.0.1:8080"}))

    assert up(StackSettings(state_dir=tmp_path)) == 1

    out = capsys.readouterr().out
    assert "already up" in out and "make down" in out
    assert (tmp_path / PID_FILE_NAME).exists()  # the running stack's record is left alone


def test_a_busy_ui_port_is_named_with_the_setting_to_change(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(StackError, match=rf"port {port} .*MAILTRACE_UI_PORT"):
            AirflowStack(StackSettings(state_dir=tmp_path, ui_port=port)).start()
    assert not (tmp_path / PID_FILE_NAME).exists()


def test_an_unknown_executor_is_refused(tmp_path):
    with pytest.raises(StackError, match="MAILTRACE_EXECUTOR"):
        AirflowStack(StackSettings(state_dir=tmp_path, executor="kubernetes")).start()


def test_make_down_with_nothing_up_says_so(tmp_path, capsys):
    assert down(tmp_path) == 0
    assert "not up" in capsys.readouterr().out


def test_make_down_after_the_launcher_died_clears_its_record(tmp_path):
    (tmp_path / PID_FILE_NAME).write_text(json.dumps({"pid": 2**22 + 1, "processes": {}, "cluster": None}))

    assert down(tmp_path, timeout=1) == 0

    assert not (tmp_path / PID_FILE_NAME).exists()


def test_each_celery_worker_reports_its_own_hostname(monkeypatch):
    monkeypatch.setenv("MAILTRACE_WORKER_NAME", "worker2")
    assert worker_hostname().endswith("-worker2")


def _process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` ('Z' for a zombie), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _pids_written(path: Path) -> list[int]:
    """The pids written to `path` so far, one per whole line."""
    text = path.read_text() if path.exists() else ""
    return [int(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_a_restart_ends_what_the_killed_process_left_running(tmp_path):
    # Like a LocalExecutor scheduler killed on its own: its child outlives it, still holding what the
    # parent held (in Airflow, the metadata-database connection and the transaction it died in).
    child_pid_file = tmp_path / "child.pid"
    parent = (
        "import subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(child_pid_file)!r}, 'a').write(f'{{child.pid}}\\n'); "
        "child.wait()"
    )
    process = ManagedProcess("parent", [sys.executable, "-c", parent], dict(os.environ), tmp_path / "p.log")
    process.start()
    try:
        first_child, *_ = wait_for(
            lambda: _pids_written(child_pid_file),
            timeout=30,
            what="the parent to start its child",
            interval=0.05,
        )
        process.kill(signal.SIGKILL, group=False)
        process.popen.wait(30)
        assert _process_state(first_child) not in (None, "Z")  # the orphan lives on

        process.restart()

        assert process.running()
        wait_for(
            lambda: _process_state(first_child) in (None, "Z"),
            timeout=30,
            what="the restart to end the killed process's child",
            interval=0.05,
        )
    finally:
        process.stop()
