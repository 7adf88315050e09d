"""`/metrics` under `identity serve` with 2 gunicorn workers (issue 19): the counts are the sum of
every worker's, whichever worker answers, and a worker that dies keeps its counts in the sum."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.identity.test_serve import BIN, _free_port, _stop, _wait_healthy

TOKEN = "workers-metrics-token"


def _healthz_count(text: str) -> float:
    line = 'identity_http_requests_total{method="GET",route="/healthz",status="200"}'
    return sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith(line))


def _scrape(url: str, token: str | None = None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def _settled(url: str, token: str | None, done: Callable[[str], bool]) -> str:
    """A scrape once `done` holds: a request is counted when its response closes, which is just after
    its client has read it (the latency includes the sending), so the last one may land a moment later."""
    deadline = time.monotonic() + 10
    text = _scrape(url, token)
    while not done(text) and time.monotonic() < deadline:
        time.sleep(0.05)
        text = _scrape(url, token)
    return text


def _workers(master: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_two_workers_are_summed_and_a_dead_one_still_counts(db_url: str, tmp_path: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # an earlier run's file: emptied at start
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path / "var"),
           "METRICS_TOKEN": TOKEN, "METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc)
        deadline = time.monotonic() + 30
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        for _ in range(39):  # one connection each (urllib closes it): spread over both workers
            _scrape(base + "/healthz")
        _settled(base + "/metrics", TOKEN, lambda text: _healthz_count(text) >= 40.0)
        scrapes = {_healthz_count(_scrape(base + "/metrics", TOKEN)) for _ in range(6)}
        assert scrapes == {40.0}  # every scrape, from either worker, sums both
        assert _healthz_count(_scrape(f"http://127.0.0.1:{metrics_port}/metrics")) == 40.0  # the listener
        made = subprocess.run([str(BIN / "identity"), "gateway", "credential", "create", "--json"], env=env,
                              capture_output=True, text=True, check=True)
        credential = json.loads(made.stdout.splitlines()[0])["credential"]
        for _ in range(10):  # the key check's own path, under gunicorn: counted like any route
            request = urllib.request.Request(base + "/api/v1/keys/verify", data=b'{"key": "key_x_y"}', headers={
                "Authorization": f"Bearer {credential}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.loads(response.read()) == {"valid": False, "reason": "unknown"}
        verified = 'identity_http_requests_total{method="POST",route="/api/v1/keys/verify",status="200"} 10.0'
        text = _settled(f"http://127.0.0.1:{metrics_port}/metrics", None, lambda text: verified in text)
        assert 'identity_key_checks_total{answer="unknown"} 10.0' in text
        assert verified in text
        assert not (folder / "counter_999999.db").exists()
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("counter_*.db")}
        assert pids >= set(_workers(proc.pid)) and len(pids) == 2  # each worker writes its own file
        victim = _workers(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (victim in _workers(proc.pid) or len(_workers(proc.pid)) < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        _wait_healthy(base, proc)  # one more /healthz
        after = _settled(f"http://127.0.0.1:{metrics_port}/metrics", None, lambda text: _healthz_count(text) >= 41.0)
        assert _healthz_count(after) >= 41.0
    finally:
        _stop(proc)
