"""The benchmark harness runs end to end in a tiny mode and writes complete results (no timing asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"throughput", "naive", "incremental", "memory", "resend", "application_cost"}


def test_tiny_benchmark_run_writes_every_scenario(pg_admin_dsn, tmp_path):
    env = {
        **os.environ,
        "MAILTRACE_BENCH_PG_DSN": pg_admin_dsn,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)]),
    }
    out = tmp_path / "bench-results"
    completed = subprocess.run(
        [sys.executable, "-m", "devtools.bench", "--scale", "0.001", "--reps", "1", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]

    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results = document["results"]
    assert {row["scenario"] for row in results} == SCENARIOS
    assert len([row for row in results if row["scenario"] == "memory"]) == 2  # extract and report
    for row in results:
        for value in (row["ratio"], row["ours"]["median"], row["baseline"]["median"]):
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, row
        assert row["ours"]["runs"] and row["baseline"]["runs"], row
        if row["measure"].startswith("floor: "):  # reference figures: a ratio, no target
            assert row["target"] is None and row["met"] is None, row
        else:
            assert isinstance(row["met"], bool), row
            assert row["target"].split()[0] in ("<=", "<", ">="), row
    # The structure, not the titles (which the benchmark may rename): every scenario has a measure with a
    # target, each target is a comparison with a number, and throughput also reports reference floors.
    for scenario in SCENARIOS:
        assert any(row["target"] for row in results if row["scenario"] == scenario), scenario
    for row in results:
        if row["target"]:
            comparison, number = row["target"].split()[:2]
            assert comparison in ("<=", "<", ">=") and float(number) > 0, row
        assert row["measure"], row
    measures = [(row["scenario"], row["measure"]) for row in results]
    assert len(measures) == len(set(measures)), "two results share a scenario and measure"
    throughput = [row for row in results if row["scenario"] == "throughput"]
    assert any(row["target"] is None for row in throughput), throughput
    assert document["config"]["reps"] == 1
    assert document["machine"]["cpus"]

    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| scenario | measure | our median | baseline median | ratio | target | met? |" in markdown
    for scenario in SCENARIOS:
        assert f"| {scenario} |" in markdown
