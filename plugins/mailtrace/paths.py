"""Where the project's SQL and templates live.

In a checkout they sit at the repository top, beside `plugins/`; in a container they are mounted
beside `dags/` and `plugins/`, so the environment can point at them explicitly.
"""

import os
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]

SQL_DIR = Path(os.environ.get("MAILTRACE_SQL_DIR", _PROJECT_ROOT / "sql"))
TEMPLATES_DIR = Path(os.environ.get("MAILTRACE_TEMPLATES_DIR", _PROJECT_ROOT / "templates"))


def read_sql(name: str) -> str:
    """Return the text of `sql/<name>` (e.g. ``"reconcile.sql"``)."""
    return (SQL_DIR / name).read_text(encoding="utf-8")
