"""Served under BASE_URL's path by gunicorn, as an operator runs it behind a proxy that passes
`/identity/...` on unchanged: `identity serve` with nothing else set, and plain `gunicorn wsgi:app`
with gunicorn's own `SCRIPT_NAME` in its environment (which gunicorn takes off the path itself; a
path outside it is then gunicorn's own error). The app takes the prefix off, or keeps the server's
(identity.web.base_path)."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.identity.test_serve import BIN, ROOT, _free_port, _stop, _wait_healthy

PREFIX = "/identity"
SECRET_KEY = "k" * 48  # long enough for the service (identity.config.secret_key)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _sign_in_page_links(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return re.findall(r'\s(?:href|action|src)="(/[^"]*)"', response.read().decode())


def test_identity_serve_under_a_path(tmp_path: Path) -> None:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": SECRET_KEY, "PYTHONPATH": str(ROOT),
           "BASE_URL": origin + PREFIX}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_healthy(origin + PREFIX, proc)["database"] == "ok"
        assert _status(f"{origin}/healthz") == 404
        links = _sign_in_page_links(f"{origin}{PREFIX}/")
        assert links and all(link.startswith(f"{PREFIX}/") for link in links), links
    finally:
        _stop(proc)


def test_gunicorn_with_its_own_script_name_under_a_path(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": SECRET_KEY, "IDENTITY_DATA_DIR": str(tmp_path),
           "BASE_URL": origin + PREFIX, "SCRIPT_NAME": PREFIX}
    subprocess.run([str(BIN / "identity"), "db", "upgrade"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_healthy(origin + PREFIX, proc)["database"] == "ok"
        links = _sign_in_page_links(f"{origin}{PREFIX}/")
        assert links and all(link.startswith(f"{PREFIX}/") for link in links), links  # the prefix once
    finally:
        _stop(proc)
