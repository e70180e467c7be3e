"""A throwaway PostgreSQL cluster for the demo and for tests on machines without a server.

Uses Debian's PostgreSQL binaries (installing the `postgresql` package when they are absent and
we are root), runs `initdb` as the unprivileged `postgres` user when started as root (initdb
refuses root), and listens on loopback only with trust auth.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg


def airflow_connection_json(dsn: str) -> str:
    """The Airflow connection (`AIRFLOW_CONN_<ID>` JSON) for a libpq DSN: how tests, demo and benchmarks
    point `mailtrace_warehouse` at the database they made."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": info.get("host", "127.0.0.1"),
            "port": int(info.get("port", 5432)),
            "login": info.get("user", "postgres"),
            "password": info.get("password", ""),
            "schema": info["dbname"],
        }
    )


def server_answers(dsn: str, timeout_seconds: int = 3) -> bool:
    """True when a PostgreSQL server accepts a connection at `dsn`."""
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_seconds):
            return True
    except psycopg.OperationalError:
        return False


def _find_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_bin_dir() -> Path:
    """Directory holding initdb/pg_ctl, installing Debian's `postgresql` package if allowed."""
    found = _find_bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            "PostgreSQL binaries not found and cannot install them (need root and apt-get): "
            "install Debian's `postgresql` package or set MAILTRACE_WAREHOUSE_URL"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)
    found = _find_bin_dir()
    if not found:
        raise RuntimeError("installed `postgresql` but initdb is still missing")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgCluster:
    """A PostgreSQL cluster in `data_dir`, started on a free loopback port."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or _free_port()
        self.bin_dir = postgres_bin_dir()
        self._run_as = self._unprivileged_user()

    @staticmethod
    def unreachable_ancestor(path: Path) -> Path | None:
        """The first folder above `path` the `postgres` user cannot enter (when we run as root), if any.

        Root's home is usually mode 0700: a cluster under a clone in /root cannot be started there. Folders
        that do not exist yet are no obstacle: `start` creates them open to the postgres user.
        """
        if os.geteuid() != 0:
            return None
        postgres_uid = pwd.getpwnam("postgres").pw_uid
        for folder in reversed(Path(path).resolve().parents):
            if not folder.exists():
                return None
            info = os.stat(folder)
            if info.st_uid != postgres_uid and not info.st_mode & 0o001:
                return folder
        return None

    @staticmethod
    def _unprivileged_user() -> list[str]:
        if os.geteuid() != 0:
            return []
        pwd.getpwnam("postgres")  # raises KeyError with a clear name when the user is missing
        return ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._run_as, *args], check=True, stdout=subprocess.DEVNULL)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """Create the cluster if needed, start it and return an admin DSN."""
        created = [folder for folder in self.data_dir.parents if not folder.exists()]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            shutil.chown(self.data_dir, user="postgres")
            os.chmod(self.data_dir, 0o700)
            # The postgres user must be able to reach its data directory through the parent and through
            # every folder made for it here (whatever the umask).
            for folder in {self.data_dir.parent, *created}:
                os.chmod(folder, os.stat(folder).st_mode | 0o755)  # noqa: S103
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "start",
        )
        deadline = time.monotonic() + 30
        while not server_answers(self.dsn):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not answer; see {self.data_dir / 'server.log'}")
            time.sleep(0.2)
        return self.dsn

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
