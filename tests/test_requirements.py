"""The requirement files agree: runtime.lock satisfies runtime.in, dev.txt only adds to it."""

from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements"


def requirements(name: str) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in (REQUIREMENTS / name).read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def pins(name: str) -> dict[str, str]:
    pinned = {}
    for requirement in requirements(name):
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{name}: {requirement} is not pinned"
        pinned[canonicalize_name(requirement.name)] = specifier.version
    return pinned


def test_runtime_in_names_minimums_only_and_never_airflow_itself():
    for requirement in requirements("runtime.in"):
        assert not canonicalize_name(requirement.name).startswith("apache-airflow-core")
        assert canonicalize_name(requirement.name) != "apache-airflow"
        assert {spec.operator for spec in requirement.specifier} == {">="}, str(requirement)


def test_the_lock_satisfies_runtime_in_and_pins_airflow():
    locked = pins("runtime.lock")

    assert locked["apache-airflow"] == "3.3.2"
    for requirement in requirements("runtime.in"):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in runtime.in but not locked"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} breaks {requirement}"


def test_dev_tools_stay_out_of_the_runtime_lock():
    locked, dev = pins("runtime.lock"), pins("dev.txt")

    assert not set(locked) & set(dev)
    assert {"pytest", "pytest-timeout", "ruff", "moto", "aiosmtpd"} <= set(dev)
    assert not {"pytest", "ruff", "moto", "cfn-lint"} & set(locked)


def test_the_locked_celery_executor_imports():
    """The lock's celery must be one the locked provider can import (celery 5.7 dropped a name it uses)."""
    import subprocess
    import sys

    probe = "from airflow.providers.celery.executors.celery_executor import CeleryExecutor"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
