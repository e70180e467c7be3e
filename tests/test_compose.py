"""docker-compose.yaml is a production shape; docker-compose.dev.yaml alone carries development shortcuts.

Read as YAML (no Docker engine needed). When a Compose v2 binary is on PATH, `docker compose config`
also checks the files the way Docker will read them.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = REPO_ROOT / "docker-compose.yaml"
DEVELOPMENT = REPO_ROOT / "docker-compose.dev.yaml"
DOCKERFILE = REPO_ROOT / "devtools" / "compose" / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / "devtools" / "compose" / ".env.example"
MAILTRACE_ENV_EXAMPLE = REPO_ROOT / "devtools" / "compose" / "mailtrace.env.example"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|_KEY\b")
LOOPBACK_PORT = re.compile(r"^(127\.0\.0\.1|\$\{[A-Z_]+:-127\.0\.0\.1\}):")
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


def services(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["services"]


def test_every_secret_is_required_with_no_fallback():
    text = PRODUCTION.read_text(encoding="utf-8")
    references = re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?])?([^}]*)\}", text)
    secrets = {name: (operator, rest) for name, operator, rest in references if SECRET_NAME.search(name)}

    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET"} <= set(secrets)
    assert {"AIRFLOW_API_SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD"} <= set(secrets)
    for name, (operator, message) in secrets.items():
        assert operator == ":?" and message.strip(), f"{name} must be ${{{name}:?message}}, not a fallback"
    assert "admin:admin" not in text and "SIMPLE_AUTH_MANAGER" not in text


def test_production_runs_the_images_code_with_an_env_file_and_a_production_auth_manager():
    compose = yaml.safe_load(PRODUCTION.read_text(encoding="utf-8"))
    common = compose["x-airflow-common"]

    assert common["env_file"] == [{"path": "mailtrace.env", "required": True}]
    assert common["build"]["target"] == "runtime"
    assert common["environment"]["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            assert not str(volume).startswith((".", "/")), f"{name} bind-mounts {volume}"
        assert "MAILTRACE_SES_QUEUE_URL" not in str(service.get("environment", {})), name


def test_published_ports_listen_on_loopback_unless_asked():
    for path in (PRODUCTION, DEVELOPMENT):
        for name, service in services(path).items():
            for port in service.get("ports", []):
                assert LOOPBACK_PORT.match(port), f"{path.name} {name}: {port}"


def test_celery_shape_workers_scale_and_every_long_running_service_is_health_checked():
    production = services(PRODUCTION)
    worker = production["airflow-worker"]

    assert AIRFLOW_SERVICES | {"redis", "postgres", "flower"} == set(production)
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == "celery worker"
    assert "redis" in worker["depends_on"]
    for name, service in production.items():
        if name != "airflow-init":
            assert "healthcheck" in service, name
            assert service.get("restart") == "always", name


def test_the_production_image_installs_the_runtime_lock_only():
    runtime_stage = DOCKERFILE.read_text(encoding="utf-8").split("FROM runtime AS dev")[0]

    assert "requirements/runtime.lock" in runtime_stage
    assert "dev.txt" not in runtime_stage and "devtools" not in runtime_stage.split("USER airflow", 1)[1]


def test_development_layer_keeps_bind_mounts_and_its_services_to_itself():
    development = services(DEVELOPMENT)

    assert {"minio", "minio-init", "mailpit", "notify-sim"} <= set(development)
    for name in AIRFLOW_SERVICES:
        assert development[name]["build"]["target"] == "dev", name
        assert "./plugins:/opt/airflow/plugins" in development[name]["volumes"], name


@pytest.fixture
def compose_project(tmp_path):
    """A copy of the compose files with .env and mailtrace.env made from the examples."""
    command = compose_command()
    if command is None:
        pytest.skip("no Compose v2 (`docker compose` or a docker-compose binary) on PATH")
    for path in (PRODUCTION, DEVELOPMENT):
        shutil.copy(path, tmp_path / path.name)
    shutil.copytree(REPO_ROOT / "devtools" / "compose", tmp_path / "devtools" / "compose")
    shutil.copy(MAILTRACE_ENV_EXAMPLE, tmp_path / "mailtrace.env")
    return command, tmp_path


def compose_command() -> list[str] | None:
    """`docker compose` when the plugin is installed, else a standalone Compose v2 binary, else None."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    if standalone is None:
        return None
    version = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30)
    return [standalone] if "v2." in version.stdout else None


def compose_config(command: list[str], project: Path, *files: str) -> subprocess.CompletedProcess:
    args = [*command, *(arg for name in files for arg in ("-f", name)), "config", "-q"]
    return subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=60)


def test_compose_refuses_to_start_until_the_secrets_are_set(compose_project):
    command, project = compose_project
    shutil.copy(ENV_EXAMPLE, project / ".env")

    refused = compose_config(command, project, "docker-compose.yaml")

    assert refused.returncode != 0
    assert "required variable" in refused.stderr and "in .env" in refused.stderr

    filled = [
        f"{line}x-{index}" if re.match(r"^[A-Z_]+=$", line) else line
        for index, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines())
    ]
    (project / ".env").write_text("\n".join(filled) + "\n", encoding="utf-8")
    for files in (("docker-compose.yaml",), ("docker-compose.yaml", "docker-compose.dev.yaml")):
        accepted = compose_config(command, project, *files)
        assert accepted.returncode == 0, accepted.stderr
