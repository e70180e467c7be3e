"""What every scenario shares: the Postgres server, scratch databases, timing and the results files."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
LOCAL_SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN_ENV = "MAILTRACE_BENCH_PG_DSN"


def ensure_import_paths() -> None:
    """`mailtrace` lives in plugins/ (Airflow puts it on sys.path; a plain interpreter does not)."""
    for path in (REPO, REPO / "plugins"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def with_dbname(dsn: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=dbname)


class Server:
    """Where the scenarios run: $MAILTRACE_BENCH_PG_DSN, the local server, or a throwaway cluster."""

    def __init__(self) -> None:
        self.admin_dsn: str | None = None
        self._cluster = None
        self._cluster_root: Path | None = None
        self._databases: list[str] = []

    def start(self) -> str:
        from devtools.pgcluster import PgCluster, server_answers

        explicit = os.environ.get(DSN_ENV)
        if explicit:
            self.admin_dsn = explicit
        elif server_answers(LOCAL_SERVER_DSN):
            self.admin_dsn = LOCAL_SERVER_DSN
        else:
            self._cluster_root = Path(tempfile.mkdtemp(prefix="mailtrace-bench-pg-"))
            self._cluster = PgCluster(self._cluster_root / "data")
            self.admin_dsn = self._cluster.start()
        return self.admin_dsn

    def stop(self) -> None:
        for name in list(self._databases):
            self.drop(name)
        if self._cluster is not None:
            self._cluster.stop()
            shutil.rmtree(self._cluster_root, ignore_errors=True)

    def _admin(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)

    def dsn(self, name: str) -> str:
        return with_dbname(self.admin_dsn, name)

    def create(self, prefix: str, *, template: str | None = None, migrate: bool = True) -> str:
        """A new scratch database (a file copy of `template` when given, else migrated from scratch)."""
        name = f"mailtrace_bench_{prefix}_{uuid.uuid4().hex[:8]}"
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        else:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        self._admin(statement)
        self._databases.append(name)
        if migrate and not template:
            from mailtrace.warehouse import apply_migrations

            with psycopg.connect(self.dsn(name)) as conn:
                apply_migrations(conn)
        return name

    def drop(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self._databases:
            self._databases.remove(name)

    def version(self) -> str:
        with psycopg.connect(self.admin_dsn) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def settings(self) -> dict[str, str]:
        names = ("shared_buffers", "work_mem", "maintenance_work_mem", "fsync", "synchronous_commit", "jit")
        with psycopg.connect(self.admin_dsn) as conn:
            settings = {
                name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                for name in names
            }
            (jit_available,) = conn.execute("SELECT pg_jit_available()").fetchone()
        return {**settings, "jit_available": str(jit_available).lower()}


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Measure:
    """One comparison: our runs and the baseline's runs, their medians and the ratio checked against a target.

    `ratio` is ours/baseline (`higher_is_better=False`: at most `target`) or baseline/ours when the claim is
    "N times faster" (`speedup=True`: at least `target`). A measure without a target is a reference figure
    (a floor), reported with its ratio but neither met nor missed.
    """

    scenario: str
    measure: str
    unit: str
    ours_label: str
    baseline_label: str
    target: float | None
    comparison: str = ""  # "<=", "<" or ">="; empty without a target
    speedup: bool = False
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)

    @property
    def ours_median(self) -> float | None:
        return statistics.median(self.ours) if self.ours else None

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        ours, baseline = self.ours_median, self.baseline_median
        if ours is None or baseline is None:
            return None
        numerator, denominator = (baseline, ours) if self.speedup else (ours, baseline)
        return numerator / denominator if denominator else float("inf")

    @property
    def pair_ratios(self) -> list[float]:
        """The ratio of each repetition's pair (ours[i] against baseline[i], timed side by side).

        On a shared machine the medians of two sides can come from different moments of load; the spread of
        the pairs shows how far one run's ratio can be trusted. Pairs are taken in order, as far as the
        shorter side goes (the naive side is timed in fewer repetitions).
        """
        ratios = []
        for ours, baseline in zip(self.ours, self.baseline, strict=False):
            numerator, denominator = (baseline, ours) if self.speedup else (ours, baseline)
            ratios.append(numerator / denominator if denominator else float("inf"))
        return ratios

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        checks = {"<=": ratio <= self.target, "<": ratio < self.target, ">=": ratio >= self.target}
        return checks[self.comparison] and all(self.conditions.values())

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "unit": self.unit,
            "ours": {"label": self.ours_label, "median": self.ours_median, "runs": self.ours},
            "baseline": {"label": self.baseline_label, "median": self.baseline_median, "runs": self.baseline},
            "ratio": ratio,
            "ratio_definition": "baseline / ours" if self.speedup else "ours / baseline",
            "pair_ratios": self.pair_ratios,
            "target": None if self.target is None else f"{self.comparison} {self.target:g}",
            "conditions": self.conditions,
            "met": self.met,
            "notes": self.notes,
            "extra": self.extra,
        }


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:,.1f} {unit}"


def _pair_range(ratios: list[float]) -> str:
    """ " [pairs 1.10-1.40]" for two or more pairs: the range a single run's ratio moved in."""
    if len(ratios) < 2:
        return ""
    return f" [pairs {min(ratios):.2f}-{max(ratios):.2f}]"


def machine_info(server: Server) -> dict[str, Any]:
    memory_kb = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory_kb = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1) if memory_kb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": server.version(),
        "postgres_settings": server.settings(),
        "postgres_dsn_host": psycopg.conninfo.conninfo_to_dict(server.admin_dsn).get("host"),
    }


def write_results(out_dir: Path, measures: list[Measure], config: dict, machine: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "machine": machine,
        "results": [m.as_dict() for m in measures],
    }
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# mailtrace benchmarks",
        "",
        f"Run {document['generated_at']} with `{config['command']}` "
        f"(scale {config['scale']:g}, {config['reps']} repetitions unless noted).",
        f"Machine: {machine['cpus']} CPUs, {machine['memory_gb']} GB RAM, PostgreSQL {machine['postgres']}, "
        f"Python {machine['python']}.",
        "",
        "| scenario | measure | our median | baseline median | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in measures:
        ratio = "n/a" if m.ratio is None else f"{m.ratio:.2f}{_pair_range(m.pair_ratios)}"
        met = {True: "yes", False: "**no**", None: "n/a"}[m.met]
        target = "(floor)" if m.target is None else f"{m.comparison} {m.target:g}"
        lines.append(
            f"| {m.scenario} | {m.measure} | {_number(m.ours_median, m.unit)} ({m.ours_label}) "
            f"| {_number(m.baseline_median, m.unit)} ({m.baseline_label}) | {ratio} "
            f"({'baseline/ours' if m.speedup else 'ours/baseline'}) | {target} | {met} |"
        )
    lines.append("")
    for m in measures:
        details = [*m.notes]
        details += [f"{name}: {'ok' if ok else 'FAILED'}" for name, ok in m.conditions.items()]
        details += [f"{key}: {value}" for key, value in m.extra.items()]
        details.append(f"runs (ours): {', '.join(f'{v:.3f}' for v in m.ours)}")
        details.append(f"runs (baseline): {', '.join(f'{v:.3f}' for v in m.baseline)}")
        details.append(f"ratio of each pair: {', '.join(f'{v:.2f}' for v in m.pair_ratios)}")
        lines.append(f"**{m.scenario} / {m.measure}**")
        lines.append("")
        lines.extend(f"- {detail}" for detail in details)
        lines.append("")
    md_path = out_dir / "results.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return json_path, md_path
