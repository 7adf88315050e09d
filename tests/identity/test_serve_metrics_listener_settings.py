"""`identity serve` with a `/metrics` listener that cannot be opened: METRICS_HOST that is no address,
METRICS_PORT that another process holds (README: "Every `identity` command answers a bad setting
... with one `error: ...` line naming it on stderr and exit 1 ..., never a traceback"; `identity
serve` checks "every setting below" before the database is touched, METRICS_HOST among them).

From a hostile operator's review: the docstring says what the command did.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.identity.test_serve import BIN, ROOT, _free_port


def _serve(tmp_path: Path, **settings: str) -> tuple[int | None, str]:
    data = tmp_path / "var"
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data), "SECRET_KEY": "s" * 32, "PYTHONPATH": str(ROOT), **settings}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(_free_port()),
                             "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # it served (without its listener): that is a failure too
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        return None, err.decode()
    return proc.returncode, err.decode()


def test_a_metrics_host_that_is_no_address_is_refused_before_the_database_is_touched(tmp_path: Path) -> None:
    """The database was migrated, gunicorn started, and the master's `when_ready` hook died with a
    `socket.gaierror` traceback; METRICS_HOST was never checked."""
    code, err = _serve(tmp_path, METRICS_HOST="metrics host!", METRICS_PORT=str(_free_port()))
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert "error:" in err and "METRICS_HOST" in err, err[-2000:]
    assert not (tmp_path / "var" / "identity.db").exists(), "the database was made and migrated first"


def test_a_metrics_port_another_process_holds_is_one_error_line(tmp_path: Path) -> None:
    """An `OSError: [Errno 98] Address already in use` traceback from the master's hook, after the
    migration; the message named neither METRICS_PORT nor the port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, err = _serve(tmp_path, METRICS_PORT=str(port))
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert "error:" in err and "METRICS_PORT" in err and str(port) in err, err[-2000:]


def test_gunicorn_run_directly_stops_at_a_metrics_port_it_cannot_open(tmp_path: Path) -> None:
    """`gunicorn -c python:identity.web.metrics_serve` (README) has no `identity serve` check before
    it: the master's `when_ready` hook itself must stop with a line naming METRICS_PORT, not a
    traceback and a master that never serves its counters."""
    data = tmp_path / "var"
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data), "SECRET_KEY": "s" * 32, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env["METRICS_PORT"] = str(holder.getsockname()[1])
        proc = subprocess.run([str(BIN / "gunicorn"), "-c", "python:identity.web.metrics_serve", "-w", "1",
                               "-b", f"127.0.0.1:{_free_port()}", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert "METRICS_PORT" in err and env["METRICS_PORT"] in err, err[-2000:]
