"""What `identity serve` writes to stderr while it serves is JSON lines (README, "Running in production":
"Logs are JSON lines on stderr"), gunicorn's own lines included: a worker booted, killed at its
timeout, exiting, a signal handled are the lines an operator's log pipeline must not drop as
unparseable.

From a hostile operator's review: the docstring says what the command did.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from tests.identity.test_serve import BIN, ROOT, _free_port, _stop, _wait_healthy

BANNER = ("serving on ", "web console: ", "no organization yet", "  identity org create")  # the CLI's, before serving


def test_gunicorns_own_log_lines_are_json_too(tmp_path: Path) -> None:
    """gunicorn's error log was left as it is: `[2026-12-06 18:30:16 +0000] [27133] [INFO] Booting
    worker with pid: 27138`, `... [INFO] Handling signal: term`, `... Worker exiting`, plain text
    among the service's JSON lines."""
    port = _free_port()
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s" * 32, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            answer.read()
    finally:
        _stop(proc)
    lines = [line for line in (proc.stderr.read().decode() if proc.stderr else "").splitlines()
             if line and not line.startswith(BANNER)]
    assert any('"route": "/healthz"' in line for line in lines)
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not not_json, "\n".join(not_json)


def test_gunicorn_run_with_the_services_config_logs_json_too(tmp_path: Path) -> None:
    """README's production recipe, `gunicorn -c python:identity.web.metrics_serve ... wsgi:app`, is
    the other way to serve: its gunicorn lines are JSON as `identity serve`'s are."""
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s" * 32, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    subprocess.run([str(BIN / "identity"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "python:identity.web.metrics_serve", "-w", "1",
                             "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
    finally:
        _stop(proc)
    lines = [line for line in (proc.stderr.read().decode() if proc.stderr else "").splitlines() if line]
    assert any('"logger": "gunicorn.error"' in line for line in lines), lines
    for line in lines:
        json.loads(line)
