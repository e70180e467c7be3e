"""mailtrace loads the same way from a checkout, a custom image and a plugins.zip, and only as itself.

No services: subprocesses with the plugins folder (or the zip) of each layout, checking what Python and
Airflow's loaders actually found.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from devtools.plugins_zip import build_plugins_zip

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DIR = REPO_ROOT / "plugins"
SHADOWING_NAMES = {"settings", "app", "auth", "events", "load", "paths", "warehouse"}


def run_python(code: str, *, env_extra: dict[str, str], cwd: Path) -> dict:
    """Run `code` in a fresh interpreter without the repository on sys.path; return its printed JSON."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MAILTRACE_SQL_DIR"}}
    env.pop("MAILTRACE_TEMPLATES_DIR", None)
    env.update(env_extra)
    completed = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


READ_FROM_PACKAGE = """
import json, sys
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else {root!r})
from jinja2 import Environment, FileSystemLoader
from mailtrace import paths
environment = Environment(loader=FileSystemLoader(paths.TEMPLATES_DIR))
template_text, _, _ = environment.loader.get_source(environment, "resend/error_resolved.en.txt.j2")
print(json.dumps({{
    "package": paths.__file__,
    "sql_dir": str(paths.SQL_DIR),
    "templates_dir": str(paths.TEMPLATES_DIR),
    "sql": paths.read_sql("report/failed_summary.sql"),
    "migrations": sorted(p.name for p in (paths.SQL_DIR / "migrations").glob("*.sql")),
    "template": template_text,
}}))
"""


def test_a_plugins_zip_carries_sql_and_templates_that_mailtrace_reads_from_inside_it(tmp_path):
    archive = tmp_path / "deploy" / "plugins.zip"
    names = build_plugins_zip(archive)

    assert {"mailtrace_ui.py", ".airflowignore", "mailtrace/paths.py"} <= set(names)
    assert "sql/report/failed_summary.sql" in names and "templates/resend/error_resolved.en.txt.j2" in names
    assert not any("__pycache__" in name for name in names)

    # Imported by zipimport from the archive: nothing beside it on disk to fall back on.
    found = run_python(READ_FROM_PACKAGE.format(root=str(archive)), env_extra={}, cwd=tmp_path)

    assert found["package"].startswith(str(archive) + os.sep), found["package"]
    assert found["sql"] == (REPO_ROOT / "sql" / "report/failed_summary.sql").read_text(encoding="utf-8")
    assert found["migrations"] == sorted(p.name for p in (REPO_ROOT / "sql" / "migrations").glob("*.sql"))
    assert found["template"] == (REPO_ROOT / "templates/resend/error_resolved.en.txt.j2").read_text(
        encoding="utf-8"
    )


def test_an_unpacked_plugins_zip_is_read_from_the_plugins_folder(tmp_path):
    plugins = tmp_path / "plugins"
    build_plugins_zip(tmp_path / "plugins.zip")
    with zipfile.ZipFile(tmp_path / "plugins.zip") as bundle:
        bundle.extractall(plugins)

    found = run_python(READ_FROM_PACKAGE.format(root=str(plugins)), env_extra={}, cwd=tmp_path)

    assert found["sql_dir"] == str(plugins / "sql")
    assert found["templates_dir"] == str(plugins / "templates")


def test_the_custom_image_layout_finds_sql_and_templates_beside_plugins(tmp_path):
    # /opt/airflow/{plugins,sql,templates} as devtools/compose/Dockerfile copies them, no env vars.
    for folder in ("plugins", "sql", "templates"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))

    found = run_python(READ_FROM_PACKAGE.format(root=str(tmp_path / "plugins")), env_extra={}, cwd=tmp_path)

    assert found["sql_dir"] == str(tmp_path / "sql")
    assert found["templates_dir"] == str(tmp_path / "templates")


def test_missing_sql_names_every_place_looked_at(tmp_path):
    shutil.copytree(PLUGINS_DIR, tmp_path / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    code = f"""
import json, sys
sys.path.insert(0, {str(tmp_path / "plugins")!r})
try:
    import mailtrace.paths
except FileNotFoundError as error:
    print(json.dumps({{"error": str(error)}}))
"""
    found = run_python(code, env_extra={}, cwd=tmp_path)

    assert "MAILTRACE_SQL_DIR" in found["error"]
    assert str(tmp_path / "plugins" / "sql") in found["error"]
    assert str(tmp_path / "sql") in found["error"]


LOAD_PLUGINS = """
import json, sys
from pathlib import Path
from airflow import plugins_manager
folder = Path(sys.argv[1]).resolve()
plugins = plugins_manager.get_plugin_info()
loaded_from_folder = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(folder)
)
print(json.dumps({
    "plugins": [plugin["name"] for plugin in plugins],
    "errors": plugins_manager.get_import_errors(),
    "modules": loaded_from_folder,
}))
"""


def load_plugins(plugins_folder: Path, tmp_path: Path, *, point_at_repository: bool = True) -> dict:
    env = {"AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder)}
    if point_at_repository:
        env["MAILTRACE_SQL_DIR"] = str(REPO_ROOT / "sql")
        env["MAILTRACE_TEMPLATES_DIR"] = str(REPO_ROOT / "templates")
    code = LOAD_PLUGINS.replace("sys.argv[1]", repr(str(plugins_folder)))
    return run_python(code, env_extra=env, cwd=tmp_path)


def test_airflow_loads_only_the_plugin_entry_point_under_its_own_name(tmp_path):
    found = load_plugins(PLUGINS_DIR, tmp_path)

    assert found["errors"] == {}
    assert "mailtrace_delivery" in found["plugins"]
    top_level = {
        name for name in found["modules"] if not name.startswith("mailtrace.") and name != "mailtrace"
    }
    assert top_level == {"mailtrace_ui"}
    assert not SHADOWING_NAMES & set(found["modules"])


def test_an_unpacked_plugins_zip_loads_as_one_plugin_with_its_own_sql_and_templates(tmp_path):
    # What MWAA does with plugins.zip: unpack it into the plugins folder, then load plugins from there.
    plugins = tmp_path / "plugins"
    build_plugins_zip(tmp_path / "plugins.zip")
    with zipfile.ZipFile(tmp_path / "plugins.zip") as bundle:
        bundle.extractall(plugins)

    found = load_plugins(plugins, tmp_path, point_at_repository=False)

    assert found["errors"] == {}
    assert "mailtrace_delivery" in found["plugins"]
    assert {name for name in found["modules"] if name.split(".")[0] != "mailtrace"} == {"mailtrace_ui"}


def test_without_the_ignore_file_the_loader_registers_bare_module_names(tmp_path):
    # The control: the same folder without plugins/.airflowignore shows what the file prevents.
    plugins = tmp_path / "plugins"
    shutil.copytree(PLUGINS_DIR, plugins, ignore=shutil.ignore_patterns("__pycache__", ".airflowignore"))

    found = load_plugins(plugins, tmp_path)

    assert {"settings", "app", "auth", "events", "load"} <= set(found["modules"])


def test_a_dag_processor_pointed_at_the_repository_parses_only_dags():
    from airflow.utils.file import list_py_file_paths

    parsed = {Path(path).relative_to(REPO_ROOT) for path in list_py_file_paths(REPO_ROOT, safe_mode=False)}

    assert parsed == {path.relative_to(REPO_ROOT) for path in (REPO_ROOT / "dags").glob("*.py")}
    assert parsed
