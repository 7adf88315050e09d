"""Hostile review of what the documentation promises (session 23): each test reads one README claim
an operator or a gateway's author relies on, and tries it the way that reader would (the real
`identity` command as a subprocess, the real service over HTTP). Each one that failed was marked
xfail(strict=True) with the reason; all were fixed the same session (the doc or the code) and their marks are gone.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from audit import Actor
from identity import scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.roles import Role
from tests.identity.test_wallet_usage import World, world  # noqa: F401  (world: the fixture)
from tests.live import serving
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


def identity_command(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `identity ARGS` as its own process, as cron or an operator's shell runs it."""
    full = {"PATH": os.environ.get("PATH", ""), "IDENTITY_DATA_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "s" * 32, **env}
    return subprocess.run([sys.executable, "-c", "import sys; from identity.web.cli import main; "
                           "sys.argv[0] = 'identity'; main()", *args],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """README: one `error: ...` line on stderr and exit 1, never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-600:]
    return lines[0]


# README, "Running in production": "Every `identity` command answers a bad setting or a refusal
# with one `error: ...` line naming it on stderr and exit 1 ..., never a traceback, ...; so too a
# `DATABASE_URL` that is not a SQLite or PostgreSQL URL, a database that cannot be reached or used
# (the line names `DATABASE_URL`, its password hidden, and the driver's reason)".

@pytest.mark.parametrize("args", [["db", "upgrade"], ["billing", "check", "--org", "acme"]],
                         ids=["db upgrade", "billing check"])
def test_a_postgresql_url_with_another_driver_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    url = f"postgresql+psycopg2://identity:hunter2@127.0.0.1:{free_port()}/identity"
    line = one_error_line(identity_command(args, {"DATABASE_URL": url}, tmp_path))
    assert "DATABASE_URL" in line and "hunter2" not in line


def test_a_password_in_the_query_string_is_hidden_too(tmp_path: Path) -> None:
    url = f"postgresql://identity@127.0.0.1:{free_port()}/identity?connect_timeout=2&password=hunter2"
    line = one_error_line(identity_command(["billing", "check", "--org", "acme"], {"DATABASE_URL": url}, tmp_path))
    assert "DATABASE_URL" in line
    assert "hunter2" not in line, line


# README, "Admin API": "Every list pages by keyset: `?limit=` (1 to 500, default 100)" and "Bodies
# and query strings are checked against the document: unknown fields and parameters, wrong JSON
# types ... are 400s, never coerced or ignored." The audit log's list refuses `limit=0` so.

def _get(origin: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(origin + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), json.loads(refused.read())


def _post(origin: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(origin + path, data=json.dumps(body).encode(), method="POST",
                                     headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), json.loads(refused.read())


def test_the_audit_log_refuses_a_limit_out_of_range(app: Flask, world: World) -> None:  # noqa: F811
    """The one list that keeps to the README's range (the contrast for the test below)."""
    with serving(app, "s23-audit-limit") as origin:
        status, _, body = _get(origin, "/api/v1/orgs/acme/audit-events?limit=0", world.owner)
    assert status == 400, body


@pytest.mark.parametrize("limit", ["0", "-1", "501"])
def test_a_list_refuses_a_limit_out_of_range(app: Flask, world: World, limit: str) -> None:  # noqa: F811
    with serving(app, "s23-members-limit") as origin:
        status, _, body = _get(origin, f"/api/v1/orgs/acme/members?limit={limit}", world.owner)
    assert status == 400 and body.get("field") == "limit", (status, body)


# README, "Team wallets and usage": "A debit that would take the balance below zero, or the period's
# spend past a limit (team, key or member), is refused: **429** problem JSON, `code`
# `balance_exhausted` or `spending_limit_reached`, with `scope` ... and `resets_at` ...;
# `spending_limit_reached` also with `Retry-After` ... (a balance refusal ends when a credit lands,
# at no time a client could wait for, so it has none)." (The README listed Retry-After for both;
# no time is true for a balance, so the doc changed, and the scope the key check gives was added.)

def test_a_balance_refusal_carries_scope_not_retry_after(app: Flask, world: World) -> None:  # noqa: F811
    with serving(app, "s23-usage-429") as origin:
        status, headers, body = _post(origin, "/api/v1/usage", world.gateway, {
            "key_id": world.member_key_id, "model": "gpt-x", "cost_micros": 100, "request_id": "s23-r1"})
        _, _, check = _post(origin, "/api/v1/keys/verify", world.gateway, {"key": world.member_key})
    assert status == 429 and body["code"] == "balance_exhausted" and "resets_at" in body
    assert (check["reason"], check["scope"]) == ("balance_exhausted", "team")
    assert body.get("scope") == "team", body
    assert "Retry-After" not in headers, headers
    readme = (ROOT / "README.md").read_text()
    assert "`spending_limit_reached` also with `Retry-After`" in readme and "so it has none" in readme


# README, "The web console": "| `/console/audit` | owners, admins, auditors | ...". DESIGN 3.2's
# table gives reading and exporting the log to owners and admins; there is no auditor role (DESIGN
# names none: its "compliance auditor" is a reader to satisfy, not a role), and the page refuses
# everyone else ("Only the org's owners and admins read the audit log."). The doc now says so.

def test_the_readme_names_who_may_read_the_console_audit_page() -> None:
    from identity.roles import PERMISSIONS

    [row] = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `/console/audit` |")]
    who = row.split("|")[2]
    assert "auditor" not in {role.value for role in Role}
    assert who.strip().startswith("owners, admins") and "auditors" not in who.replace("no auditor role", ""), who
    assert PERMISSIONS["audit.read"] == {Role.OWNER, Role.ADMIN}


# README, "Running in production": the production command is `gunicorn -c python:identity.web.metrics_serve
# -w 4 -k gthread --threads 1 --keep-alive 75 ... wsgi:app`, and "`identity serve` ... does both steps
# (migrate, then gunicorn with exactly these settings)". README, "SCIM 2.0": "request body 1 MiB
# (larger: 413 that keeps the keep-alive connection ...; past 16 MiB the 413 says `Connection: close`)".

def _answer_head(port: int, headers: str, declared: int) -> str:
    """Send a request declaring a body of `declared` bytes (its first 64 KiB only) and return the answer's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                     f"Content-Type: application/scim+json\r\nContent-Length: {declared}\r\n\r\n".encode() + b"x" * 65536)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n")[0].decode()


def test_the_readme_gunicorn_command_says_connection_close_past_16_mib(db: Database, acme: NewOrg, system: Actor,
                                                                       tmp_path: Path) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "DATABASE_URL": db.url,
           "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "BASE_URL": f"http://127.0.0.1:{port}",
           "HOME": str(tmp_path)}  # gunicorn's control socket, if it opens one, goes under this test's folder
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:identity.web.metrics_serve", "-w", "1",
                             "-k", "gthread", "--threads", "1", "--keep-alive", "75", "-b", f"127.0.0.1:{port}",
                             "wsgi:app"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        head = _answer_head(port, f"Authorization: Bearer {token}\r\n", 17 * 1024 * 1024)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert head.startswith("HTTP/1.1 413"), head
    assert "connection: close" in head.lower(), head


# README, "Keys, rotation and team service keys": `POST /api/v1/orgs/<org>/service-keys` makes "a key of
# the team, not of a person. It acts at the `member` role with `inference`/`usage.read` only"; "Team
# wallets and usage": "The reads (the wallet, its spend, its limits, a member's spend) take a key with
# the `usage.read` or the `admin` scope (a reporting job's key need not administer)".

def test_a_team_service_key_with_usage_read_reads_its_teams_wallet(app: Flask, world: World) -> None:  # noqa: F811
    with serving(app, "s23-service-key") as origin:
        status, _, made = _post(origin, "/api/v1/orgs/acme/service-keys", world.owner, {
            "team_id": world.wallet.split("/")[6], "name": "reporting", "scopes": ["usage.read"]})
        assert status == 201, made
        _, _, check = _post(origin, "/api/v1/keys/verify", world.gateway, {"key": made["key"]})
        assert (check["valid"], check["kind"], check["scopes"]) == (True, "service", ["usage.read"])
        status, _, wallet = _get(origin, world.wallet, {"Authorization": f"Bearer {made['key']}"})
    assert status == 200, wallet


# README, "Metrics for operators": `identity_key_checks_total` | `answer`: `valid`, `unknown`, `revoked`,
# `blocked`, `expired`, ... `unauthenticated` (a wrong gateway credential). An operator alerts on that set.
# (It left out the spend refusals, which the counter counts by the check's reason: the doc now lists them.)

def readme_key_check_answers() -> set[str]:
    """The `answer` values the README's metrics table lists for identity_key_checks_total."""
    [row] = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("| `identity_key_checks_total` |")]
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[2].partition("`answer`:")[2]))


def test_the_readme_lists_every_key_check_reason() -> None:
    from identity.gateway import Refusal

    assert {"valid", "unauthenticated", *(str(r) for r in Refusal)} == readme_key_check_answers()


def test_every_key_check_answer_is_one_the_readme_lists(app: Flask, world: World) -> None:  # noqa: F811
    from identity.web import metrics

    def counted() -> set[str]:
        found = metrics.families().registry.collect()
        return {sample.labels["answer"] for family in found if family.name == "identity_key_checks"
                for sample in family.samples if sample.name == "identity_key_checks_total" and sample.value}
    with serving(app, "s23-metrics") as origin:
        status, _, _ = _post(origin, "/api/v1/usage", world.gateway, {
            "key_id": world.member_key_id, "model": "gpt-x", "cost_micros": 100, "request_id": "s23-m1"})
        assert status == 429
        _, _, check = _post(origin, "/api/v1/keys/verify", world.gateway, {"key": world.member_key})
    assert check["reason"] == "balance_exhausted"
    assert counted() <= readme_key_check_answers(), counted()
