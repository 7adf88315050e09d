"""What the SCIM and key-check benchmarks share: gunicorn servers they start and stop, the machine's
background load, percentiles, and the `identity` CLI (moved out of benchmarks/bench_scim.py)."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# ---- small helpers ---------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(db: str, prefix: str) -> Iterator[tuple[Path, str]]:
    """Yield a scratch folder and the URL of a fresh database in it: a SQLite file, or a throwaway
    PostgreSQL cluster (stopped afterwards). The folder is removed unless BENCH_KEEP is set."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = None
    try:
        if db == "postgresql":
            from tests.pgcluster import PostgresCluster

            cluster = PostgresCluster()
            cluster.start()
            yield folder, cluster.create_database("bench")
        else:
            yield folder, f"sqlite:///{folder / 'bench.db'}"
    finally:
        if cluster is not None:
            cluster.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def machine_busy(seconds: float = 2.0) -> float:
    """The share of all CPUs that other processes kept busy over `seconds` (from /proc/stat).

    Run while this benchmark is idle: whatever it finds is load that would compete with the
    measurement, such as a test suite left running.
    """
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle

    total_0, idle_0 = sample()
    time.sleep(seconds)
    total_1, idle_1 = sample()
    return 1 - (idle_1 - idle_0) / max(1, total_1 - total_0)


# ---- gunicorn ----------------------------------------------------------------------------------

class Server:
    """One gunicorn master and its workers, started and stopped by this process only."""

    def __init__(self, app: str, env: dict[str, str], args: argparse.Namespace, log: Path,
                 pythonpath: str | None = None, ready_path: str = "/healthz") -> None:
        self.port = _free_port()
        self.log = log
        cmd = [str(VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(args.workers),
               "--worker-class", args.worker_class, "--timeout", "120", "--keep-alive", "30",
               "--backlog", "2048", "--log-level", "warning"]
        if args.worker_class == "gthread":
            cmd += ["--threads", str(args.threads)]
        if pythonpath:
            cmd += ["--pythonpath", pythonpath]
        cmd.append(app)
        self.cmd = cmd
        self.env = {**os.environ, **env}
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        handle = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=handle, stderr=handle,
                                     stdin=subprocess.DEVNULL)
        handle.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}; log:\n{self._tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", self.ready_path)
                if conn.getresponse().status == 200 and len(self.worker_pids()) >= 1:
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"gunicorn not ready in 60 s; log:\n{self._tail()}")
        time.sleep(1.0)  # let every worker boot, not only the one that answered
        return self

    def _tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def peak_rss_mb(self) -> dict[int, float]:
        """VmHWM (peak resident set) of each worker, in MiB."""
        found = {}
        for pid in self.worker_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        found[pid] = int(line.split()[1]) / 1024
            except OSError:
                pass
        return found

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the workers have used so far."""
        total = 0.0
        for pid in self.worker_pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _identity(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "identity"), *argv], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
