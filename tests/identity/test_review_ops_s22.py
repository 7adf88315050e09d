"""Operator's review (s22): the settings the README names, read at start.

Each test failed on the code it was written against (xfail, strict) and says what an operator met; all
were fixed in the same session and hold without their marks. The README promises
"Every `identity` command answers a bad setting ... with one `error: ...` line naming it" and that
`identity serve` checks "every setting below" before the database is touched."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import text

from audit import Actor
from identity import config, keys, orgs, scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web import cli as cli_module
from identity.web import server
from identity.web.app import create_app
from identity.web.cli import main
from identity.web.logs import JsonFormatter
from saml import links
from tests.conftest import ReadingClient
from tests.saml.conftest import link_form


def _serve_refuses(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                   named: str) -> None:
    started: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli_module, "run_server", lambda *a: started.append(a))
    result = CliRunner(env={**cli_env, **env}).invoke(main, ["serve", "--port", "18499"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert started == [], f"gunicorn was started despite {env}"
    assert result.exit_code == 1 and named in result.output, result.output


def test_a_garbage_audit_signing_key_is_refused_at_start(cli_env: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_refuses(cli_env, monkeypatch, {"AUDIT_SIGNING_KEY": "not-a-key"}, "AUDIT_SIGNING_KEY")


def test_a_garbage_audit_signing_key_is_no_500_on_the_public_key_route(db: Database, tmp_path: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path),
                        "AUDIT_SIGNING_KEY": "not-a-key"}.items():
        monkeypatch.setenv(name, value)
    try:
        app = create_app()
    except ValueError as refused:  # refused at start, naming the setting: as good
        assert "AUDIT_SIGNING_KEY" in str(refused)
        return
    app.test_client_class = ReadingClient
    answer = app.test_client().get("/api/v1/audit/public-key")
    assert answer.status_code != 500


def test_an_smtp_ca_file_that_does_not_exist_is_refused_at_start(cli_env: dict[str, str], tmp_path: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_refuses(cli_env, monkeypatch, {"SMTP_URL": "smtps://mail.internal", "SMTP_CA_FILE":
                                          str(tmp_path / "no-such-ca.pem")}, "SMTP_CA_FILE")


def test_an_smtp_url_with_port_0_is_refused_not_sent_to_port_25() -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        config.smtp_server("smtp://mail.internal:0")


def test_a_topup_webhook_url_that_is_no_http_url_is_refused_at_start(cli_env: dict[str, str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_refuses(cli_env, monkeypatch, {"TOPUP_WEBHOOK_URL": "notaurl", "TOPUP_WEBHOOK_SECRET": "s3cret"},
                   "TOPUP_WEBHOOK_URL")


def test_a_scim_rate_limit_of_0_does_not_refuse_every_scim_request(db: Database, system: Actor, acme: NewOrg,
                                                                   tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path),
                        "SCIM_RATE_LIMIT": "0"}.items():
        monkeypatch.setenv(name, value)
    try:
        app = create_app()
    except ValueError as refused:  # refused at start, naming the setting: as good
        assert "SCIM_RATE_LIMIT" in str(refused)
        return
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    app.test_client_class = ReadingClient
    answer = app.test_client().get("/scim/v2/Users", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.status_code


def test_an_unknown_saml_metadata_allow_private_value_is_refused_at_start(cli_env: dict[str, str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_refuses(cli_env, monkeypatch, {"SAML_METADATA_ALLOW_PRIVATE": "on"}, "SAML_METADATA_ALLOW_PRIVATE")



def _long_named_org_and_key(db: Database, system: Actor) -> str:
    """An org whose name is 200 characters (orgs.create_org's own limit) and its owner's admin key."""
    with db.transaction() as session:
        made = orgs.create_org(session, system, "L" * 200, slug="longname", owner_email="owner@long.test")
        return keys.create_api_key(session, system, made.org.id, user_id=made.owner.id,
                                   team_id=made.default_team_id, name="owner", scopes=["admin"]).secret


@pytest.mark.postgres_only("SQLite does not enforce VARCHAR lengths")
def test_an_invitation_in_an_org_with_a_long_name_is_no_500(db: Database, system: Actor, tmp_path: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    key = _long_named_org_and_key(db, system)
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    app.test_client_class = ReadingClient
    answer = app.test_client().post("/api/v1/orgs/longname/invitations", json={"email": "new@long.test"},
                                    headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.status_code


@pytest.mark.postgres_only("SQLite does not enforce VARCHAR lengths, the error used to reach the log")
def test_an_unhandled_database_error_logs_no_invitation_token(db: Database, system: Actor, tmp_path: Any,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              logged: pytest.LogCaptureFixture) -> None:
    key = _long_named_org_and_key(db, system)
    with db.engine.begin() as conn:  # the subject now fits its column; a narrower one still overflows
        conn.execute(text("ALTER TABLE outbox_mails ALTER COLUMN subject TYPE varchar(20)"))
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    app.test_client_class = ReadingClient
    app.test_client().post("/api/v1/orgs/longname/invitations", json={"email": "new@long.test"},
                           headers={"Authorization": f"Bearer {key}"})
    lines = "\n".join(logging.Formatter().format(record) for record in logged.records)
    assert "unhandled error" in lines  # the error was logged ...
    assert "/invite/inv_" not in lines  # ... without the invitation's token


def test_two_identity_serve_instances_do_not_share_one_gunicorn_control_socket() -> None:
    first = server._Server(server.options("127.0.0.1", 18441, 1, 1)).cfg
    second = server._Server(server.options("127.0.0.1", 18442, 1, 1)).cfg
    assert first.control_socket_disable or first.control_socket != second.control_socket, first.control_socket


def test_a_line_logged_after_a_request_carries_no_request_id(db: Database, tmp_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    app.test_client_class = ReadingClient
    answered = app.test_client().get("/healthz")
    record = logging.makeLogRecord({"name": "gunicorn.error", "levelname": "WARNING",
                                    "msg": "Invalid request from ip=127.0.0.1: Invalid HTTP Version"})
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] is None, f"{line['request_id']} (the /healthz request was {answered.headers['X-Request-Id']})"


def test_a_prometheus_multiproc_dir_that_is_a_file_is_refused_at_start(cli_env: dict[str, str], tmp_path: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "not-a-folder"
    afile.write_text("")
    _serve_refuses(cli_env, monkeypatch, {"PROMETHEUS_MULTIPROC_DIR": str(afile)}, "PROMETHEUS_MULTIPROC_DIR")


def test_a_metrics_port_equal_to_the_service_port_is_refused_before_migrating(
        cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_refuses(cli_env, monkeypatch, {"METRICS_PORT": "18499"}, "METRICS_PORT")


def test_a_session_idle_time_accepted_at_start_signs_people_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                               db: Database, system: Actor, acme: NewOrg) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "BASE_URL": "http://localhost",
                        "IDENTITY_DATA_DIR": str(tmp_path), "SESSION_IDLE_MINUTES": "0"}.items():
        monkeypatch.setenv(name, value)
    try:
        app = create_app()
    except ValueError as refused:  # refused at start, naming the setting: as good
        assert "SESSION_IDLE_MINUTES" in str(refused)
        return
    client = app.test_client()
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    assert client.post(f"/login/link/{token}", data=link_form(client, token)).status_code == 303
    assert client.get("/me").status_code == 200


@pytest.mark.postgres_only("a PostgreSQL server that stops answering on a connection already open")
def test_the_health_check_gives_up_within_seconds_when_the_server_stops_answering(db: Database) -> None:
    database = Database(db.url)
    with database.reading() as session:
        backend = int(session.scalar(text("SELECT pg_backend_pid()")))
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            database.answers()
            outcome.append(None)
        except Exception as error:  # noqa: BLE001 - any failure is the health check's "unhealthy"
            outcome.append(error)

    os.kill(backend, signal.SIGSTOP)  # the server process of the pooled connection stops answering
    try:
        worker = threading.Thread(target=check, daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(10)
        waited = time.monotonic() - started
    finally:
        os.kill(backend, signal.SIGCONT)
        worker.join(30)
        database.dispose()
    assert waited < 10, f"the health check was still waiting after {waited:.1f} s (then: {outcome})"


@pytest.mark.postgres_only("PostgreSQL's server ends the connections (a restart, a failover)")
def test_a_scim_request_after_the_database_server_restarted_is_no_500(db: Database, system: Actor, acme: NewOrg,
                                                                      tmp_path: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    app = create_app()
    app.test_client_class = ReadingClient
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/scim/v2/Users", headers=headers).status_code == 200
    with db.engine.connect() as conn:  # what a restart does to every connection the service holds
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    answer = client.get("/scim/v2/Users", headers=headers)
    assert answer.status_code != 500, answer.status_code


def test_a_worker_that_reads_the_secret_key_file_while_another_makes_it_gets_no_empty_key(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    # The other worker's state between its os.open(O_CREAT | O_EXCL) and its write: the file, still empty.
    os.close(os.open(tmp_path / "secret_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        key = config.secret_key()
    except (OSError, ValueError):  # refused (or waited and failed) rather than run with no key: as good
        return
    assert key != "", "this worker would run with an empty SECRET_KEY"


def test_a_worker_started_beside_an_empty_secret_key_file_accepts_no_forged_scim_token(
        db: Database, system: Actor, acme: NewOrg, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DATABASE_URL": db.url, "IDENTITY_DATA_DIR": str(tmp_path),
                        "BASE_URL": "http://127.0.0.1:8000"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    os.close(os.open(tmp_path / "secret_key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # another worker's
    try:
        app = create_app()
    except (OSError, ValueError):  # refused to start with no key: as good
        return
    with db.transaction() as session:
        client_id = scim_credentials.create_scim_client(session, system, acme.org.id).prefix
    now = int(time.time())
    claims = {"iss": "http://127.0.0.1:8000", "aud": "scim", "sub": client_id, "org": acme.org.id, "iat": now,
              "exp": now + 600, "jti": "forged"}
    empty = hmac.new(b"", b"scim-access-token", hashlib.sha256).digest()
    forged = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, OctKey.import_key(empty))
    app.test_client_class = ReadingClient
    answer = app.test_client().get("/scim/v2/Users", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401, answer.status_code
