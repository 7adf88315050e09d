"""No secret in a path reaches a log: the request log names the route's rule, not the raw path.

Also, over `identity serve` itself: refusals of hostile bodies keep the connection usable, and the
embedded database and its folder are private to the service's user.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from audit import Actor
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.logs import JsonFormatter
from saml import links
from tests.identity.test_serve import BIN, _free_port, _stop, _wait_healthy


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record as the service writes it (JSON lines, exceptions included)."""
    return [JsonFormatter().format(record) for record in caplog.records]


def test_a_sign_in_link_token_never_reaches_the_log(client: FlaskClient, db: Database, system: Actor,
                                                     acme: NewOrg, logged: pytest.LogCaptureFixture) -> None:
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    client.get(f"/login/link/{token}")
    client.post(f"/login/link/{token}")
    client.get(f"/login/link/{token}/extra")  # matches no rule: the path is still not written
    client.get(f"/login/link/{token}?again=1")
    lines = _lines(logged)
    requests = [json.loads(line) for line in lines if json.loads(line)["message"] == "request"]
    assert len(requests) == 4
    assert [r["route"] for r in requests] == ["/login/link/<token>", "/login/link/<token>", "-",
                                              "/login/link/<token>"]
    assert all("path" not in r for r in requests)
    assert not [line for line in lines if token in line]


def test_identity_serve_logs_no_token_keeps_the_connection_after_refusals_and_keeps_files_private(
        tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "var"
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data), "BASE_URL": f"http://127.0.0.1:{port}"}
    env.pop("DATABASE_URL", None)
    env.pop("SECRET_KEY", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        made = json.loads(subprocess.run([str(BIN / "identity"), "org", "create", "Served", "--json"], env=env,
                                         capture_output=True, text=True, check=True).stdout)
        link = subprocess.run([str(BIN / "identity"), "login-link", "--org", "served", "--email",
                               made["owner"]["email"]], env=env, capture_output=True, text=True, check=True)
        token = link.stdout.strip().rsplit("/", 1)[1]
        _refusals_keep_the_connection(port, made, token)
        _assert_private(data)
    finally:
        _stop(proc)
    log = b"".join(stream.read() for stream in (proc.stdout, proc.stderr) if stream).decode()
    assert '"route": "/login/link/<token>"' in log
    assert token not in log


def _refusals_keep_the_connection(port: int, made: dict, token: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/scim/v2/Users", body='{"userName": "x", "x": ' + deep + "}",
                     headers={"Authorization": f"Bearer {made['scim_token']}", "Content-Type": "application/scim+json"})
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert (answer.status, body["scimType"], answer.will_close) == (400, "invalidSyntax", False)
        first = conn.sock
        conn.request("POST", "/api/v1/orgs/served/teams", body='{"name": ' + deep + "}",
                     headers={"Authorization": f"Bearer {made['admin_api_key']}", "Content-Type": "application/json"})
        answer = conn.getresponse()
        body = json.loads(answer.read())
        assert (answer.status, answer.getheader("Content-Type"), answer.will_close) == (
            400, "application/problem+json", False)
        conn.request("GET", f"/login/link/{token}")
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200
        conn.request("GET", "/healthz")
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["database"] == "ok"
        assert conn.sock is first  # one connection served all four
    finally:
        conn.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _assert_private(data: Path) -> None:
    assert _mode(data) == 0o700
    for name in ("identity.db", "identity.db-wal", "identity.db-shm", "secret_key"):
        assert _mode(data / name) == 0o600, name


def test_the_embedded_database_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "data"
    database = Database(f"sqlite:///{folder / 'identity.db'}")
    try:
        with database.transaction() as session:  # WAL mode: the -wal and -shm files appear
            session.execute(text("CREATE TABLE t (x INTEGER)"))
        assert _mode(tmp_path / "new") == 0o700 and _mode(folder) == 0o700
        for name in ("identity.db", "identity.db-wal", "identity.db-shm"):
            assert _mode(folder / name) == 0o600, name
    finally:
        database.dispose()


def test_an_existing_shared_folder_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    database = Database(f"sqlite:///{tmp_path / 'identity.db'}")
    try:
        with database.transaction() as session:
            session.execute(text("SELECT 1"))
        assert _mode(tmp_path) == 0o755 and _mode(tmp_path / "identity.db") == 0o600
    finally:
        database.dispose()
