"""Throwaway PostgreSQL cluster on 127.0.0.1 for tests (initdb + pg_ctl in a temp dir)."""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Install them, e.g. "
    "`apt-get install -y --no-install-recommends postgresql` on Debian/Ubuntu, or put the "
    "directory containing initdb on PATH. As root, set CI=1 or PG_AUTO_INSTALL=1 to auto-install."
)
_ROOT = os.geteuid() == 0
_auto_install_tried = False


def _find_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        # /usr/local/bin/initdb may be a symlink; pg_ctl must sit next to the real postgres.
        return Path(os.path.realpath(found)).parent
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()]
    candidates.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])
    return candidates[-1] if candidates else None


def find_bindir() -> Path:
    """Return the PostgreSQL bin directory, installing it via apt-get only when allowed."""
    global _auto_install_tried
    bindir = _find_bindir()
    if bindir is None and _ROOT and (os.environ.get("CI") or os.environ.get("PG_AUTO_INSTALL")):
        if not _auto_install_tried:
            _auto_install_tried = True
            subprocess.run("apt-get update && apt-get install -y --no-install-recommends postgresql",
                           shell=True, check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            bindir = _find_bindir()
    if bindir is None:
        raise RuntimeError(_INSTALL_HINT)
    return bindir


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    # pg_ctl stop returns once postmaster.pid is removed, slightly before the process exits.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                return  # exited; reaping the zombie is init's job
        except (OSError, IndexError):
            return
        time.sleep(0.01)


def _memory_dir() -> str | None:
    """/dev/shm when it is a writable directory with 4 GiB free (the tests' copies are dropped as
    each test ends, so the cluster stays near one database's size), else the default temp dir."""
    shm = Path("/dev/shm")
    try:
        usable = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 4 << 30
    except OSError:
        usable = False
    return str(shm) if usable else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A private PostgreSQL server in a temporary directory, trust auth for user postgres."""

    def __init__(self, *, in_memory: bool = False) -> None:
        """Prepare an unstarted cluster; nothing touches the disk until start().

        `in_memory`: keep the data directory in /dev/shm (tmpfs) when it has room, for the test
        suite, which copies a database per test: on disk a copy took 80-240 ms and the directory
        of a run's 2,000 copies 70 s to delete; in memory, 14-20 ms. Benchmarks keep the disk's
        costs, as a deployment has them."""
        self.in_memory = in_memory
        self.port: int = 0
        self.dir: Path | None = None
        self._running = False
        self._bindir: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default 'postgres' database."""
        return self._url("postgres")

    def _url(self, dbname: str) -> str:
        if not self.port:
            raise RuntimeError("PostgresCluster is not started")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # initdb refuses to run as root; cwd must be a dir the postgres user can enter.
        prefix = ["runuser", "-u", "postgres", "--"] if _ROOT else []
        return subprocess.run([*prefix, *cmd], cwd=self.dir, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def _log_tail(self, lines: int = 30) -> str:
        log = Path(self.dir or "/nonexistent", "server.log")
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def start(self) -> None:
        """Run initdb and start the server; return once it accepts connections (30s timeout)."""
        if self._running:
            return
        self._bindir = bindir = find_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="pgcluster-", dir=_memory_dir() if self.in_memory else None))
        self._running = True
        atexit.register(self.stop)
        if _ROOT:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = self.dir / "data"
        res = self._run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
                        "--encoding=UTF8", "--locale=C", "--no-sync")
        if res.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        for _attempt in range(3):
            self.port = _free_port()
            opts = (f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                    f"-c unix_socket_directories={shlex.quote(str(self.dir))} -c max_connections=200")
            res = self._run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"),
                            "-o", opts, "-w", "-t", "30", "start")
            # Another process can grab the port between _free_port() and bind: retry on a new one.
            if res.returncode == 0 or "could not bind" not in self._log_tail():
                break
        if res.returncode != 0:
            detail = f"{res.stdout}\n{res.stderr}\n--- server log tail ---\n{self._log_tail()}"
            self.stop()
            raise RuntimeError(f"PostgreSQL failed to start on port {self.port}:\n{detail}")

    def stop(self) -> None:
        """Stop the server immediately and delete its directory; safe to call repeatedly."""
        if not self._running or self.dir is None:
            return
        self._running = False
        atexit.unregister(self.stop)
        data = self.dir / "data"
        pidfile = data / "postmaster.pid"
        if pidfile.exists() and self._bindir:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            self._run(str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            _wait_gone(pid)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (a copy of `template` when given) and return its SQLAlchemy URL.

        A copy is made file by file (STRATEGY FILE_COPY), not through the WAL (PostgreSQL 15's
        default, WAL_LOG, which writes the whole template to the WAL again for every copy: 2x slower)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(template))
        self._execute(statement)
        return self._url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, ending any session still connected to it (a test's leftovers)."""
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
