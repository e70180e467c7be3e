"""`python -m devtools.bench [--quick] [--scenario NAME ...] [--reps N] [--scale F] [--out DIR]`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from devtools.bench.harness import REPO, ensure_import_paths

DEFAULT_OUT = REPO / "bench-results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench",
        description="Benchmarks of the mailtrace pipeline (issue 8); writes results.json and results.md.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("throughput", "naive", "incremental", "memory", "resend", "application_cost"),
        help="run only this scenario (repeatable); default: all six",
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions per scenario (default 5)")
    parser.add_argument("--quick", action="store_true", help="sizes 10x smaller: a smoke run")
    parser.add_argument("--scale", type=float, help="multiply every size by this (overrides --quick)")
    parser.add_argument("--naive-reps", type=int, default=2, help="repetitions of the slow naive side")
    parser.add_argument("--memory-reps", type=int, default=2, help="repetitions of each memory child")
    parser.add_argument("--resend-reps", type=int, default=2, help="repetitions of the rate-limited resend")
    parser.add_argument("--resend-rate", type=int, default=600, help="simulator limit R, requests/minute")
    parser.add_argument("--resend-batch", type=int, default=600, help="emails per resend run (scaled)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Airflow reads its home at import time; the benchmark never touches the user's.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mailtrace-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")
    ensure_import_paths()

    from devtools.bench.harness import Server, log, machine_info, write_results
    from devtools.bench.scenarios import SCENARIOS, Config

    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    config = Config(
        scale=scale,
        reps=args.reps,
        naive_reps=args.naive_reps,
        memory_reps=args.memory_reps,
        resend_reps=args.resend_reps,
        resend_rate_per_minute=args.resend_rate,
        resend_batch=args.resend_batch,
    )
    names = args.scenario or list(SCENARIOS)
    command = "python -m devtools.bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    server = Server()
    server.start()
    measures = []
    failures = []
    started = time.monotonic()
    try:
        machine = machine_info(server)
        for name in names:
            log(f"scenario {name} (scale {scale:g}, {args.reps} repetitions)")
            try:
                measures.extend(SCENARIOS[name](server, config))
            except Exception:  # one broken scenario must not hide the others' results
                failures.append(name)
                traceback.print_exc()
            write_results(args.out, measures, _config_dict(config, command.strip(), names), machine)
    finally:
        server.stop()
    json_path, md_path = write_results(
        args.out, measures, _config_dict(config, command.strip(), names), machine
    )
    log(f"done in {time.monotonic() - started:.0f}s: {json_path} and {md_path}")
    print(md_path.read_text(encoding="utf-8"))
    if failures:
        log(f"scenarios that failed to run: {', '.join(failures)}")
        return 1
    return 0


def _config_dict(config, command: str, names: list[str]) -> dict:
    return {"command": command, "scenarios": names, **config.__dict__}


if __name__ == "__main__":
    sys.exit(main())
