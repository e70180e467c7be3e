"""Where the project's SQL and templates live.

Each folder is looked up once, at import, and the first candidate that holds it wins:

1. `MAILTRACE_SQL_DIR` / `MAILTRACE_TEMPLATES_DIR` when set (the folder must then exist);
2. the plugins folder, beside the `mailtrace` package (`plugins/sql/`, `plugins/templates/`): the
   plugins.zip layout built by `make plugins-zip`, whether the platform unpacks the zip (MWAA) or
   Python imports `mailtrace` from the zip itself (the folder is then unpacked to a private
   temporary directory, because Jinja loaders and migration globs need real files);
3. beside the plugins folder (`<root>/sql/`, `<root>/templates/`): a checkout of the repository and
   the custom image, which copies them to /opt/airflow/sql and /opt/airflow/templates.

Nothing found is an error at import naming every place looked at, rather than a missing file in
the middle of a run.
"""

import atexit
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

_PLUGINS_ROOT = Path(__file__).resolve().parents[1]


def _unpack_from_zip(archive: Path, folder: str) -> Path | None:
    """Copy `folder/` out of the zip `mailtrace` was imported from; None when the zip lacks it."""
    with zipfile.ZipFile(archive) as bundle:
        members = [name for name in bundle.namelist() if name.startswith(f"{folder}/")]
        if not members:
            return None
        target = Path(tempfile.mkdtemp(prefix=f"mailtrace-{folder}-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        bundle.extractall(target, members)
    return target / folder


def locate(folder: str, env_var: str) -> Path:
    """The directory holding the project's `folder` ("sql" or "templates"), see the module doc."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not Path(explicit).is_dir():
            raise FileNotFoundError(f"{env_var}={explicit} is not a directory")
        return Path(explicit)
    candidates = [_PLUGINS_ROOT / folder, _PLUGINS_ROOT.parent / folder]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked_at = [str(candidate) for candidate in candidates]
    if zipfile.is_zipfile(_PLUGINS_ROOT):
        unpacked = _unpack_from_zip(_PLUGINS_ROOT, folder)
        if unpacked is not None:
            return unpacked
        looked_at.append(f"{folder}/ inside {_PLUGINS_ROOT}")
    raise FileNotFoundError(
        f"mailtrace's {folder}/ folder not found; set {env_var} or ship it in one of: {', '.join(looked_at)}"
    )


SQL_DIR = locate("sql", "MAILTRACE_SQL_DIR")
TEMPLATES_DIR = locate("templates", "MAILTRACE_TEMPLATES_DIR")


def read_sql(name: str) -> str:
    """Return the text of `sql/<name>` (e.g. ``"reconcile.sql"``)."""
    return (SQL_DIR / name).read_text(encoding="utf-8")
