"""The admin API, the gateway's key check and the operator surface against their documents (a review; each failed before)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from werkzeug.test import Client

from audit import Actor
from identity import keys
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.cli import main
from identity.web.keycheck import KeyCheckFirst
from tests.fronts import first_front


@pytest.fixture
def credential(db: Database, runner: CliRunner) -> str:
    result = runner.invoke(main, ["gateway", "credential", "create", "--json"])
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout.splitlines()[0])["credential"])


@pytest.fixture
def secret(db: Database, system: Actor, acme: NewOrg) -> str:
    with db.transaction() as session:
        return keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                   name="k", scopes=["inference"]).secret


def _both(app: Flask, **request: Any) -> tuple[Any, Any]:
    front = first_front(app)
    assert isinstance(front, KeyCheckFirst)
    return Client(app).open(**request), Client(front.fallback).open(**request)


@pytest.mark.parametrize("key", ["key_ab\ud800cd_x", "\ud800"])
def test_a_lone_surrogate_in_the_key_is_a_400_on_the_front_as_in_the_view(app: Flask, credential: str,
                                                                          key: str) -> None:
    body = json.dumps({"key": key}).encode()  # "\ud800" escaped: valid JSON text, not Unicode text
    served, flask_only = _both(app, path="/api/v1/keys/verify", method="POST", data=body,
                               content_type="application/json", headers={"Authorization": f"Bearer {credential}"})
    assert flask_only.status_code == 400
    assert served.status_code == flask_only.status_code, served.data


def test_the_document_says_the_key_check_takes_the_gateway_credential() -> None:
    """README "The gateway's key check": `Authorization: Bearer gw_...`, not an API key or a session; the
    document's own `gateway` scheme says so, and POST /api/v1/usage already names it."""
    from identity.web.openapi import document

    spec = document()
    assert spec["paths"]["/api/v1/usage"]["post"]["security"] == [{"gateway": []}]
    check = spec["paths"]["/api/v1/keys/verify"]["post"]
    assert check.get("security", spec["security"]) == [{"gateway": []}]
    assert all(p["name"] != "X-CSRF-Token" for p in check["parameters"])  # no cookie way in


def test_a_key_check_without_the_documented_required_key_is_a_400(app: Flask, credential: str) -> None:
    """KeyCheckRequest has `required: ["key"]`; README: a bad body is 400. `{}` is answered as a check."""
    from identity.web.openapi import document

    assert document()["components"]["schemas"]["KeyCheckRequest"]["required"] == ["key"]
    served, flask_only = _both(app, path="/api/v1/keys/verify", method="POST", json={},
                               headers={"Authorization": f"Bearer {credential}"})
    assert (served.status_code, flask_only.status_code) == (400, 400), (served.json, flask_only.json)


@pytest.fixture
def owner_key(db: Database, system: Actor, acme: NewOrg) -> str:
    with db.transaction() as session:
        return keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                   name="admin", scopes=["admin"]).secret


@pytest.mark.parametrize("path,body,schema", [
    ("/api/v1/orgs/acme/members", {"email": "shout@acme.test", "role": "ADMIN"}, "NewMember"),
    ("/api/v1/orgs/acme/members", {"email": "pad@acme.test", "role": " viewer "}, "NewMember"),
    ("/api/v1/orgs/acme/invitations", {"email": "inv@acme.test", "role": "Admin"}, "NewInvitation"),
])
def test_a_role_outside_the_documented_enum_is_refused_not_coerced(client: Any, owner_key: str, path: str,
                                                                   body: dict, schema: str) -> None:
    """README "Admin API": bodies are checked against the document; wrong values are 400s, never coerced.
    The document's role enum is lower case; the API lower-cases and strips what it is sent."""
    from identity.web.openapi import document

    assert body["role"] not in document()["components"]["schemas"][schema]["properties"]["role"]["enum"]
    response = client.post(path, json=body, headers={"Authorization": f"Bearer {owner_key}"})
    assert response.status_code == 400, response.json


def test_a_blank_metrics_host_means_the_default_loopback_not_a_crash(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Any) -> None:
    """README: METRICS_HOST defaults to 127.0.0.1, and a blank METRICS_PORT counts as unset. An env file's
    `METRICS_HOST=` (blank) is passed to the listener as it is: the gunicorn master dies in `when_ready`
    with socket.gaierror ("Name or service not known"), which names no setting."""
    import socket

    from identity.web import metrics, metrics_serve

    metrics.families()  # prometheus_client imported (its mode fixed) before the multiprocess folder is set
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setenv("METRICS_PORT", str(port))
    monkeypatch.setenv("METRICS_HOST", "")
    servers: list[Any] = []
    real = metrics_serve.start_listener
    monkeypatch.setattr(metrics_serve, "start_listener", lambda *a, **k: servers.append(real(*a, **k)))
    try:
        metrics_serve.when_ready(None)
        assert servers and servers[0].server_address[0] == "127.0.0.1", servers[0].server_address
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("name,value", [("SCIM_TOKEN_TTL_SECONDS", "1h"), ("AUDIT_RETENTION_FLOOR_DAYS", "ninety"),
                                        ("SESSION_IDLE_MINUTES", "30m"), ("KEY_CHECK_MAX_AGE_SECONDS", "ten")])
def test_a_bad_numeric_setting_is_a_clear_error_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                         name: str, value: str) -> None:
    """A setting that is not a number stops the app at start with an error that names it (as
    AUDIT_RETENTION_FLOOR_DAYS's own reader words it), not a bare `invalid literal for int()` at start, or
    (SCIM_TOKEN_TTL_SECONDS, AUDIT_RETENTION_FLOOR_DAYS: read per request) a 500 on every OAuth token request
    or retention change once the service runs."""
    from identity.web.app import create_app
    from identity.web.context import EXTENSION

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'identity.db'}")
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-32-characters-min")
    monkeypatch.setenv(name, value)
    try:
        app = create_app()
    except Exception as error:  # noqa: BLE001  # any error will do, so long as it names the setting
        assert name in str(error), repr(error)
    else:
        app.extensions[EXTENSION].dispose()
        pytest.fail(f"the app started with {name}={value!r}")


def test_a_shorter_scim_token_lifetime_is_not_silently_lengthened(client: Any, runner: CliRunner, acme: NewOrg,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """README's settings table: SCIM_TOKEN_TTL_SECONDS is "OAuth access token lifetime", default 3600. An
    operator who sets 900 gets bearer tokens that live 3600 s, with no error or warning (scim/auth.py
    clamps it up to an hour)."""
    made = json.loads(runner.invoke(main, ["scim", "client", "create", "--org", "acme", "--json"]).stdout)
    monkeypatch.setenv("SCIM_TOKEN_TTL_SECONDS", "900")
    token = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": made["client_id"],
                                              "client_secret": made["client_secret"]})
    assert token.status_code == 200, token.json
    assert token.json["expires_in"] <= 900, token.json["expires_in"]


def test_a_debit_answer_of_post_usage_is_valid_under_the_documented_schema(client: Any, credential: str, db: Database,
                                                                            system: Actor, acme: NewOrg) -> None:
    """UsageResult is `oneOf` [a record's result, {results: [...]}], but neither alternative requires anything
    or forbids other members: every 200 answer matches both, so none is valid under `oneOf`. (The fuzz test
    calls /api/v1/usage with an API key only, so it never sees a 200.)"""
    import jsonschema_rs

    from identity import wallets
    from identity.web.openapi import document

    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["inference"])
        wallets.top_up(session, system, acme.org.id, acme.default_team_id, 1000, "invoice-1")
    gateway = {"Authorization": f"Bearer {credential}"}
    record = {"key_id": key.id, "model": "m", "cost_micros": 5, "request_id": "req-1"}
    spec = document()
    ok = spec["paths"]["/api/v1/usage"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**ok, "components": spec["components"]})
    for body in (record, {"usage": [{**record, "request_id": "req-2"}]}):
        answer = client.post("/api/v1/usage", json=body, headers=gateway)
        assert answer.status_code == 200, answer.json
        assert validator.is_valid(answer.json), [str(e).splitlines()[0] for e in validator.iter_errors(answer.json)]


@pytest.mark.parametrize("method,path,body", [
    ("DELETE", "/api/v1/orgs/acme/members/{member}", None),
    ("DELETE", "/api/v1/orgs/acme/teams/{team}/members/{member}", None),
    ("POST", "/api/v1/orgs/acme/members", {"email": "new@acme.test"}),
    ("PATCH", "/api/v1/orgs/acme/settings", {"default_role": "viewer"}),
    ("GET", "/api/v1/orgs/acme/seats", None),
    ("GET", "/api/v1/orgs/acme/settings", None),
])
def test_an_unknown_query_parameter_is_a_400_on_every_operation_and_changes_nothing(
        client: Any, db: Database, system: Actor, acme: NewOrg, owner_key: str, method: str, path: str,
        body: dict | None) -> None:
    """README "Admin API": "Bodies and query strings are checked against the document: unknown fields and
    parameters ... are 400s, never coerced or ignored", and a team removal's preview is a route of its own
    "chosen over a `dry_run` flag so that a preview can never be a removal by a forgotten parameter".
    Only the list views call `known_args`: `DELETE .../members/<id>?dry_run=true` removes the member (204),
    `POST .../members?dry_run=true` provisions one (and charges a seat); /seats and /settings ignore it."""
    from identity.web.openapi import document
    from tests.factories import counts, provision

    member = provision(db, system, acme.org.id, "mia@acme.test")
    url = path.format(member=member.id, team=acme.default_team_id)
    operation = document()["paths"][url.replace("/acme/", "/{org}/").replace(member.id, "{user_id}")
                                    .replace(acme.default_team_id, "{team_id}")][method.lower()]
    assert "dry_run" not in [p["name"] for p in operation["parameters"]]  # the document takes no such parameter
    before = counts(db)
    answer = client.open(url, method=method, json=body, query_string={"dry_run": "true"},
                         headers={"Authorization": f"Bearer {owner_key}"})
    assert answer.status_code == 400, (answer.status_code, answer.json)
    assert answer.json["code"] == "invalid_value" and answer.json.get("field") == "dry_run"
    assert counts(db) == before


def test_developer_is_accepted_as_member_for_the_default_role_too(client: Any, db: Database, acme: NewOrg,
                                                                 owner_key: str) -> None:
    """DESIGN.md 3.2: "`developer` is accepted as an alias of `member` on input". Every role input takes it
    (a member's role, an invitation's, a rule's org and team role, a team membership's) except the org's
    `default_role` setting: `PATCH .../settings {"default_role": "developer"}` is a 400 (orgs.SETTINGS checks
    the raw value against viewer/member/admin), and the document's Settings enum leaves it out."""
    owner = {"Authorization": f"Bearer {owner_key}"}
    assert client.patch("/api/v1/orgs/acme/settings", json={"default_role": "viewer"}, headers=owner).status_code == 200
    answer = client.patch("/api/v1/orgs/acme/settings", json={"default_role": "developer"}, headers=owner)
    assert answer.status_code == 200, answer.json
    assert answer.json["default_role"] == "member"
