"""The two ways to run it, as an operator would: `identity serve`, and `identity db upgrade` + gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]  # this checkout's code, whichever the venv's `identity` runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _assert_keeps_connections_alive(port: int) -> None:
    """Requests on one client connection are served on it, as an IdP's SCIM client sends them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        sockets = []
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close
            sockets.append(conn.sock)
        assert sockets[0] is not None and sockets[0] is sockets[1] is sockets[2]
    finally:
        conn.close()


def test_identity_serve_migrates_and_serves_on_embedded_sqlite(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "BASE_URL": f"http://127.0.0.1:{port}"}
    env.pop("DATABASE_URL", None)
    env.pop("SECRET_KEY", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_healthy(f"http://127.0.0.1:{port}", proc) == {"status": "ok", "database": "ok"}
        created = subprocess.run([str(BIN / "identity"), "org", "create", "Served", "--json"], env=env,
                                 capture_output=True, text=True, check=True)
        key = json.loads(created.stdout)["admin_api_key"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/key", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["org"]["slug"] == "served"
        _assert_keeps_connections_alive(port)
    finally:
        _stop(proc)
    assert (tmp_path / "var" / "identity.db").exists() and (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_db_upgrade_then_gunicorn_serves(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": "s3cret" * 6, "IDENTITY_DATA_DIR": str(tmp_path)}
    subprocess.run([str(BIN / "identity"), "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"], env=env,
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _wait_healthy(f"http://127.0.0.1:{port}", proc)["database"] == "ok"
    finally:
        _stop(proc)


@pytest.mark.parametrize("port", ["70000", "-1", "0"])
def test_serve_refuses_a_port_out_of_range_before_the_database_is_touched(tmp_path: Path, port: str) -> None:
    """README: bad usage, "such as an out-of-range value", exits 2 with no traceback, and a bad setting
    is refused before the database is touched (70000 used to migrate, then die in gunicorn's bind)."""
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s3cret" * 6, "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "identity.web.cli", "serve", "--host", "127.0.0.1", "--port", port],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-800:]
    assert "--port" in done.stderr and not (tmp_path / "var" / "identity.db").exists()


def test_serve_on_another_port_without_base_url_serves_a_console_one_can_sign_in_to(tmp_path: Path) -> None:
    """DESIGN.md 8: `identity serve [--host H] [--port P]` serves it, and it announces "web console:
    http://127.0.0.1:P/". Without BASE_URL, every URL it builds and every same-origin check it makes is
    for BASE_URL's default, http://127.0.0.1:8000, whatever --port says: the console's own same-origin
    sign-in POST from http://127.0.0.1:P is refused (403 "did not come from this service's own page"),
    and SCIM `location`s and sign-in links name port 8000, where nothing listens."""
    import re
    from urllib.parse import urlsplit

    port = _free_port()
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s3cret" * 6, "PYTHONPATH": str(ROOT)}
    for name in ("DATABASE_URL", "BASE_URL"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "identity.web.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        created = subprocess.run([sys.executable, "-m", "identity.web.cli", "org", "create", "Served", "--json"],
                                 env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        path = urlsplit(json.loads(created.stdout)["sign_in_link"]).path  # opened on the port it serves
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path)
        page = conn.getresponse()
        html = page.read().decode()
        cookie = "; ".join(c.split(";", 1)[0] for c in page.headers.get_all("Set-Cookie") or [])
        token = re.search(r"name='csrf_token' value='([^']+)'", html)
        assert page.status == 200 and token, html[:300]
        conn.request("POST", path, body=f"csrf_token={token.group(1)}",
                     headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
                              "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
        signed_in = conn.getresponse()
        body = signed_in.read().decode()
        conn.close()
        assert signed_in.status == 303, (signed_in.status, body[:300])
    finally:
        _stop(proc)


def test_serve_refuses_a_guessable_secret_key_before_the_database_is_touched(tmp_path: Path) -> None:
    """A SECRET_KEY under 32 characters (review s22: every visitor of the sign-in page gets an HMAC
    under it to test guesses offline) is one `error:` line naming the setting, never its value."""
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "changeme", "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "identity.web.cli", "serve", "--host", "127.0.0.1", "--port", "65000"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-800:]
    assert "error: SECRET_KEY must be at least 32 characters" in done.stderr and "changeme" not in done.stderr
    assert not (tmp_path / "var" / "identity.db").exists()
