"""Bad input the service once answered with a 500 (gaps left by test_api_fuzz, test_hostile_input, test_console_forms).

Each test here names one kind of bad input that the service answered with a 500 (or accepted where
the rest of the service refused it): times at the edge of the calendar, lone UTF-16 surrogates
in JSON, NUL characters in console forms, query strings and paths, and unknown query parameters.
The rule they hold: a precise 4xx in the protocol's own format (problem JSON under /api/v1, an
HTML page for the console and the sign-in pages), nothing written, never a 500.
"""

# ruff: noqa: UP031  (JSON text with escapes json.dumps would not write: printf keeps them visible)
from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import gateway, keys, wallets
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import counts
from tests.identity.test_console_forms import _sign_in_form, add, sign_in


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


def _problem(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.content_type == "application/problem+json", response.content_type
    body: dict[str, Any] = response.json
    assert body["status"] == status and body["detail"] and body["code"]
    return body


def _b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


# -- times at the edge of the calendar ----------------------------------------------------------
# `datetime.fromisoformat` reads these, and they are valid ISO 8601; converting them to UTC
# (astimezone) overflows datetime's range (year 1 to 9999), an OverflowError that no handler
# turns into a 400.

EDGE_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"]


@pytest.mark.parametrize("moment", EDGE_TIMES)
@pytest.mark.parametrize("path,name", [("/api/v1/orgs/acme/audit-events", "since"),
                                       ("/api/v1/orgs/acme/audit-events", "until"),
                                       ("/api/v1/orgs/acme/audit-events/export", "since"),
                                       ("/api/v1/orgs/acme/audit-events/export", "until")])
def test_an_audit_time_filter_that_overflows_utc_is_a_problem(client: FlaskClient, db: Database,
                                                              auth: dict[str, str], path: str, name: str,
                                                              moment: str) -> None:
    before = counts(db)
    response = client.get(path, query_string={name: moment}, headers=auth)
    assert _problem(response)["field"] == name
    assert counts(db) == before  # not even the audit.read / audit.exported event


@pytest.mark.parametrize("moment", EDGE_TIMES)
def test_an_audit_cursor_whose_time_filter_overflows_utc_is_refused(client: FlaskClient, auth: dict[str, str],
                                                                    moment: str) -> None:
    cursor = _b64({"v": 1, "after": 0, "filters": {"since": moment}})
    response = client.get("/api/v1/orgs/acme/audit-events", query_string={"cursor": cursor}, headers=auth)
    assert _problem(response)["field"] in ("cursor", "since")


@pytest.mark.parametrize("period", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00",
                                    "9999-12-31T00:00:00+00:00"])
def test_a_spend_period_at_the_edge_of_the_calendar_is_a_problem(client: FlaskClient, acme: NewOrg,
                                                                 auth: dict[str, str], period: str) -> None:
    """The billing cycle around year 1 or 9999 starts or ends in year 0 or 10000 (seats.add_months)."""
    response = client.get(f"/api/v1/orgs/acme/teams/{acme.default_team_id}/wallet/spend",
                          query_string={"by": "key", "period": period}, headers=auth)
    assert _problem(response)["field"] == "period"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
@pytest.mark.parametrize("path", ["/api/v1/orgs/acme/teams", "/api/v1/orgs/acme/invitations",
                                  "/api/v1/orgs/acme/seat-charges"])
def test_a_page_cursor_whose_time_overflows_utc_is_refused(client: FlaskClient, auth: dict[str, str], path: str,
                                                           moment: str) -> None:
    """`after` of a (created, id) list: a well-formed cursor with an aware time that has no UTC
    equivalent fails binding (audit.models UTCDateTime.process_bind_param)."""
    response = client.get(path, query_string={"after": _b64([moment, "x"])}, headers=auth)
    assert _problem(response)["field"] == "after"


# -- lone surrogates in JSON bodies --------------------------------------------------------------
# "\ud800" is valid JSON text, but the string it gives is not Unicode text: neither psycopg nor
# sqlite3 can encode it (UnicodeEncodeError). json_body refuses NUL for the same reason, not this.

LONE = '"\\ud800"'


def _surrogate_bodies(team: str) -> list[tuple[str, str, str]]:
    return [
        ("POST", "/api/v1/orgs/acme/teams", '{"name": %s}' % LONE),
        ("PATCH", f"/api/v1/orgs/acme/teams/{team}", '{"name": %s}' % LONE),
        ("POST", "/api/v1/orgs/acme/api-keys", '{"name": %s}' % LONE),
        ("POST", "/api/v1/orgs/acme/scim-tokens", '{"name": %s}' % LONE),
        ("POST", "/api/v1/orgs/acme/group-mappings", '{"group_external_id": %s, "org_role": "viewer"}' % LONE),
        ("POST", "/api/v1/orgs/acme/transfer-ownership", '{"user_id": %s}' % LONE),
        ("POST", f"/api/v1/orgs/acme/teams/{team}/members", '{"user_id": %s}' % LONE),
        ("POST", f"/api/v1/orgs/acme/teams/{team}/wallet/top-ups", '{"amount_micros": 5, "reference": %s}' % LONE),
        ("PUT", "/api/v1/orgs/acme/sso", '{"idp_metadata_xml": %s}' % LONE),
    ]


@pytest.mark.parametrize("index", range(len(_surrogate_bodies("t"))),
                         ids=[f"{m} {p.rsplit('/', 1)[-1]} {b[:30]}" for m, p, b in _surrogate_bodies("{team}")])
def test_a_lone_surrogate_in_a_json_body_is_a_problem(client: FlaskClient, db: Database, acme: NewOrg,
                                                      auth: dict[str, str], index: int) -> None:
    method, path, body = _surrogate_bodies(acme.default_team_id)[index]
    before = counts(db)
    response = client.open(path, method=method, data=body, content_type="application/json", headers=auth)
    _problem(response)
    assert counts(db) == before


@pytest.mark.parametrize("field", ["key_id", "model", "request_id"])
def test_a_lone_surrogate_in_a_usage_record_is_a_problem(client: FlaskClient, db: Database, system: Actor,
                                                         acme: NewOrg, field: str) -> None:
    with db.transaction() as session:
        credential = gateway.create_credential(session, system).secret
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="spender", scopes=["inference"])
        wallets.top_up(session, system, acme.org.id, acme.default_team_id, 10**9, "seed")
    record = {"key_id": key.id, "model": "m", "cost_micros": 5, "request_id": "r-1", field: "\ud800"}
    before = counts(db)
    response = client.post("/api/v1/usage", data=json.dumps(record), content_type="application/json",
                           headers={"Authorization": f"Bearer {credential}"})
    assert _problem(response)["field"] == field
    assert counts(db) == before


@pytest.mark.parametrize("name", ["actor", "target", "actor_type", "outcome"])
def test_a_lone_surrogate_in_an_audit_cursor_filter_is_refused(client: FlaskClient, auth: dict[str, str],
                                                               name: str) -> None:
    """decode_cursor checks its filters for NUL (test_hostile_input), not for a lone surrogate."""
    cursor = _b64({"v": 1, "after": 0, "filters": {name: "\ud800"}})
    response = client.get("/api/v1/orgs/acme/audit-events", query_string={"cursor": cursor}, headers=auth)
    assert _problem(response)["field"] == "cursor"


# -- unknown query parameters --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/orgs/acme/teams/{team}/wallet/limits",
                                  "/api/v1/orgs/acme/teams/{team}/wallet/topup-requests",
                                  "/api/v1/orgs/acme/members/{owner}/spend"])
def test_a_wallet_read_refuses_an_unknown_query_parameter(client: FlaskClient, acme: NewOrg, auth: dict[str, str],
                                                          path: str) -> None:
    """Every operation refuses a query parameter the document does not declare (common.declared_query: "a misspelt
    filter must not widen a read"); these three once answered 200 to any query string."""
    url = path.format(team=acme.default_team_id, owner=acme.owner.id)
    response = client.get(url, query_string={"subject_type": "key", "bogus": "1"}, headers=auth)
    assert _problem(response)["field"] in ("bogus", "subject_type")


# -- the console: NUL in forms, query strings and paths; calendar-edge audit filters ------------
# The admin API refuses NUL everywhere (common.refuse_nul, json_body); the console's pages call
# the same services with no such check: a 500 on PostgreSQL, a stored NUL on SQLite.

def _console_requests(team: str, member: str) -> list[tuple[str, str, dict[str, str] | None]]:
    return [
        ("POST", "/console/teams", {"name": "a\x00b"}),
        ("POST", f"/console/teams/{team}/rename", {"name": "a\x00b"}),
        ("POST", f"/console/teams/{team}/members", {"user_id": "a\x00b", "role": "admin"}),
        ("POST", "/console/members/invite", {"email": "x@acme.test", "role": "member", "team_id": "a\x00"}),
        ("POST", "/console/keys", {"team_id": team, "name": "a\x00", "scopes": "inference"}),
        ("POST", "/console/keys", {"team_id": "a\x00", "name": "a", "scopes": "inference"}),
        ("POST", "/console/idp/mappings", {"group_external_id": "a\x00", "org_role": "viewer"}),
        ("POST", "/console/idp/scim-tokens", {"name": "a\x00"}),
        ("POST", f"/console/teams/{team}/wallet/top-up", {"amount": "5", "reference": "a\x00"}),
        ("POST", "/console/keys/a%00b/revoke", {}),
        ("POST", "/console/members/invitations/a%00b/revoke", {}),
        ("GET", "/console/teams?team=a%00b", None),
        ("GET", "/console/audit?actor=a%00b", None),
        ("GET", "/console/audit?action=a%00b", None),
        ("GET", "/console/members/a%00b/spend", None),
        ("GET", "/console/members/a%00b/sso", None),
        ("GET", "/console/teams/a%00b/wallet", None),
    ]


@pytest.mark.parametrize("index", range(len(_console_requests("t", "m"))),
                         ids=[f"{m} {p} {sorted(f or {})}" for m, p, f in _console_requests("{team}", "{member}")])
def test_nul_in_a_console_form_query_or_path_is_an_html_refusal(client: FlaskClient, db: Database, acme: NewOrg,
                                                                index: int) -> None:
    member = add(db, acme, "bob@acme.test", "member")
    token = sign_in(client, db, acme.owner.id)
    method, path, form = _console_requests(acme.default_team_id, member)[index]
    before = counts(db)
    response = client.open(path, method=method, data=None if form is None else {**form, "csrf_token": token})
    assert response.status_code < 500, response.data[:200]
    assert response.content_type.startswith("text/html"), response.content_type
    if method == "POST":
        assert 400 <= response.status_code < 500, response.status_code
        assert counts(db) == before


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("moment", EDGE_TIMES)
def test_a_console_audit_time_filter_that_overflows_utc_is_an_html_400(client: FlaskClient, db: Database,
                                                                       acme: NewOrg, name: str, moment: str) -> None:
    sign_in(client, db, acme.owner.id)
    response = client.get("/console/audit", query_string={name: moment})
    assert response.status_code == 400, response.data[:200]
    assert response.content_type.startswith("text/html")
    assert "ISO 8601" in response.get_data(as_text=True)


# -- the sign-in pages and the SAML routes: NUL from anybody, no session needed -----------------

@pytest.mark.parametrize("fields", [{"who": "a\x00b"}, {"who": "a\x00@b.test"},
                                    {"org": "a\x00", "email": "x@acme.test"},
                                    {"org": "acme", "email": "x\x00@acme.test"}], ids=repr)
def test_nul_in_the_sign_in_form_is_not_a_500(client: FlaskClient, db: Database, acme: NewOrg,
                                                fields: dict[str, str]) -> None:
    client.application.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    response = client.post("/", data={"csrf_token": _sign_in_form(client), **fields})
    assert response.status_code < 500, response.data[:200]  # SQLite: the page any unknown address gets
    assert response.content_type.startswith("text/html")


@pytest.mark.parametrize("fields", [{"org": "a\x00", "email": "x@acme.test"},
                                    {"org": "acme", "email": "x\x00@acme.test"}], ids=repr)
def test_nul_in_the_email_sign_in_form_is_not_a_500(client: FlaskClient, db: Database, acme: NewOrg,
                                                      fields: dict[str, str]) -> None:
    client.application.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    page = client.get("/login/email").get_data(as_text=True)
    found = re.search(r"name='csrf_token' value='([^']+)'", page)
    assert found
    response = client.post("/login/email", data={"csrf_token": found.group(1), **fields})
    assert response.status_code < 500, response.data[:200]  # SQLite: "Check your mail", as for anyone
    assert response.content_type.startswith("text/html")


@pytest.mark.parametrize("method,path", [("GET", "/saml/a%00b/metadata"), ("GET", "/saml/a%00b/login"),
                                         ("POST", "/saml/a%00b/acs"), ("GET", "/saml/a%00b/slo")])
def test_nul_in_a_saml_org_slug_is_an_html_4xx(client: FlaskClient, acme: NewOrg, method: str, path: str) -> None:
    """SQLite answers these 404 "Single sign-on is not available"; PostgreSQL must too."""
    response = client.open(path, method=method, data={"SAMLResponse": "x"} if method == "POST" else None)
    assert 400 <= response.status_code < 500, response.data[:200]
    assert response.content_type.startswith("text/html")
