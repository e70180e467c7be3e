"""`make up` / `make down` refuse clearly what they cannot do, before starting anything."""

from __future__ import annotations

import json
import os
import socket

import pytest

from devtools.up import PID_FILE_NAME, AirflowStack, StackError, StackSettings, down, up, worker_hostname


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
