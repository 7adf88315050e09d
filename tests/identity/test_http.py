"""The app over HTTP: health, request ids, the admin API's errors and tenant isolation."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, mappings, orgs
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import counts


@pytest.fixture
def keyed(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """Admin keys of two orgs: acme's owner and globex's owner."""
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        acme_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                       team_id=acme.default_team_id, name="a", scopes=["admin"])
        globex_key = keys.create_api_key(session, system, globex.org.id, user_id=globex.owner.id,
                                         team_id=globex.default_team_id, name="g", scopes=["admin"])
        mapping = mappings.create_mapping(session, system, globex.org.id, group_display_name="Eng", org_role="viewer")
    return {"acme": f"Bearer {acme_key.secret}", "globex": f"Bearer {globex_key.secret}",
            "globex_owner": globex.owner.id, "globex_team": globex.default_team_id, "globex_mapping": mapping.id}


def test_healthz_checks_the_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok", "database": "ok"}


def test_request_id_is_the_servers_and_the_clients_is_echoed_apart(client: FlaskClient) -> None:
    answer = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert answer.headers["X-Client-Request-Id"] == "abc-123"
    made = answer.headers["X-Request-Id"]
    assert made != "abc-123" and len(made) == 32 and made.isalnum()


def test_flask_cookie_session_is_off(client: FlaskClient) -> None:
    """Nothing uses `flask.session` (browser sessions are identity.sessions'): it is not opened,
    never sets a cookie, and refuses a write instead of silently signing one."""
    import flask
    from flask.sessions import NullSession

    app = client.application
    with app.test_request_context("/", headers={"Cookie": "session=eyJ4IjoxfQ.forged.sig"}):
        app.preprocess_request()
        assert isinstance(flask.session, NullSession) and dict(flask.session) == {}
        with pytest.raises(RuntimeError):
            flask.session["user"] = "someone"
    assert "Set-Cookie" not in client.get("/healthz").headers


def test_missing_or_wrong_key_is_401_problem(client: FlaskClient, keyed) -> None:
    for header in ({}, {"Authorization": "Bearer key_000000000000_nope"}, {"Authorization": "Basic abc"}):
        response = client.get("/api/v1/orgs/acme/members", headers=header)
        assert response.status_code == 401
        assert response.content_type == "application/problem+json"
        wrong_token = header.get("Authorization", "").startswith("Bearer")  # RFC 6750 section 3.1
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="identity"' + (
            ', error="invalid_token"' if wrong_token else "")


ENDPOINTS = [
    ("GET", "/api/v1/orgs/{org}/seats", None),
    ("GET", "/api/v1/orgs/{org}/members", None),
    ("POST", "/api/v1/orgs/{org}/members", {"email": "spy@x.test"}),
    ("PATCH", "/api/v1/orgs/{org}/members/{user}", {"role": "viewer"}),
    ("DELETE", "/api/v1/orgs/{org}/members/{user}", None),
    ("GET", "/api/v1/orgs/{org}/teams", None),
    ("POST", "/api/v1/orgs/{org}/teams", {"name": "Spies"}),
    ("PATCH", "/api/v1/orgs/{org}/teams/{team}", {"name": "Hacked"}),
    ("DELETE", "/api/v1/orgs/{org}/teams/{team}", {"confirm": "Default"}),
    # Issue 16: a team and its members, the org's life, billing reads, mappings edited in place.
    ("GET", "/api/v1/orgs/{org}/teams/{team}", None),
    ("POST", "/api/v1/orgs/{org}/teams/{team}/members", {"user_id": "{user}", "role": "admin"}),
    ("PATCH", "/api/v1/orgs/{org}/teams/{team}/members/{user}", {"role": "viewer"}),
    ("GET", "/api/v1/orgs/{org}/teams/{team}/members/{user}/removal", None),
    ("DELETE", "/api/v1/orgs/{org}/teams/{team}/members/{user}", None),
    ("POST", "/api/v1/orgs/{org}/transfer-ownership", {"user_id": "{user}"}),
    ("DELETE", "/api/v1/orgs/{org}", {"confirm": "globex"}),
    ("GET", "/api/v1/orgs/{org}/seat-charges", None),
    ("PATCH", "/api/v1/orgs/{org}/group-mappings/{mapping}", {"org_role": "owner"}),
]


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_a_key_of_one_org_never_reaches_another(client: FlaskClient, db: Database, keyed, method, path, body) -> None:
    before = counts(db)
    ids = {"user": keyed["globex_owner"], "team": keyed["globex_team"], "mapping": keyed["globex_mapping"]}
    body = None if body is None else {k: v.format(**ids) for k, v in body.items()}
    for org_ref in ("globex",):
        url = path.format(org=org_ref, **ids)
        response = client.open(url, method=method, json=body, headers={"Authorization": keyed["acme"]})
        assert response.status_code == 404, response.json
    # Globex's ids under acme's own org path are not found either.
    url = path.format(org="acme", **ids)
    if any(name in path for name in ("{user}", "{team}", "{mapping}")):
        response = client.open(url, method=method, json=body, headers={"Authorization": keyed["acme"]})
        assert response.status_code == 404, response.json
    assert counts(db) == before


def test_admin_api_member_lifecycle(client: FlaskClient, keyed) -> None:
    auth = {"Authorization": keyed["acme"]}
    created = client.post("/api/v1/orgs/acme/members", json={"email": "dev@acme.test", "role": "developer"}, headers=auth)
    assert created.status_code == 201 and created.json["role"] == "member"
    uid = created.json["id"]
    changed = client.patch(f"/api/v1/orgs/acme/members/{uid}", json={"role": "admin", "active": False}, headers=auth)
    assert changed.status_code == 200 and (changed.json["role"], changed.json["active"]) == ("admin", False)
    assert client.delete(f"/api/v1/orgs/acme/members/{uid}", headers=auth).status_code == 204
    assert client.patch(f"/api/v1/orgs/acme/members/{uid}", json={"role": "viewer"}, headers=auth).status_code == 404


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "invalid_value"),
    (b"[1, 2]", 400, "invalid_value"),
    (b'{"email": "x@acme.test", "role": "emperor"}', 400, "invalid_value"),
    (b'{"email": "owner@acme.test"}', 409, "conflict"),
])
def test_bad_input_is_a_precise_problem_and_writes_nothing(client: FlaskClient, db: Database, keyed,
                                                           body, status, code) -> None:
    before = counts(db)
    response = client.post("/api/v1/orgs/acme/members", data=body, content_type="application/json",
                           headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["code"]) == (status, code)
    assert counts(db) == before


def test_last_owner_over_http_is_409(client: FlaskClient, keyed, acme: NewOrg) -> None:
    response = client.delete(f"/api/v1/orgs/acme/members/{acme.owner.id}", headers={"Authorization": keyed["acme"]})
    assert response.status_code == 409 and response.json["code"] == "last_owner"


def test_oversized_body_is_413(client: FlaskClient, keyed) -> None:
    response = client.post("/api/v1/orgs/acme/teams", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                           content_type="application/json", headers={"Authorization": keyed["acme"]})
    assert response.status_code == 413


def test_openapi_describes_every_admin_route(app, client: FlaskClient) -> None:
    import re

    spec = client.get("/openapi.json").json
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).replace("{org_ref}", "{org}"), method)
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == described


def test_unknown_routes_and_methods_under_the_api_are_problem_json(client: FlaskClient, keyed) -> None:
    missing = client.get("/api/v1/nope", headers={"Authorization": keyed["acme"]})
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    wrong = client.put("/api/v1/key", headers={"Authorization": keyed["acme"]})
    assert wrong.status_code == 405 and wrong.json["status"] == 405


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/api/v1/orgs/acme/members", {"GET", "POST"}),
    ("GET", "/api/v1/keys/verify", {"POST"}),
    ("POST", "/api/v1/orgs/acme/seats", {"GET"}),
])
def test_a_405_names_the_allowed_methods(client: FlaskClient, keyed, method: str, path: str, allowed: set[str]) -> None:
    """RFC 9110 section 15.5.6: "The origin server MUST generate an Allow header field in a 405
    response". The problem JSON is ours; the header is the routing error's."""
    response = client.open(path, method=method, headers={"Authorization": keyed["acme"]})
    assert response.status_code == 405 and response.content_type == "application/problem+json"
    assert allowed <= {name.strip() for name in response.headers.get("Allow", "").split(",")}, response.headers


@pytest.mark.parametrize("body", [b'{"email": "nan@acme.test", "x": NaN}', b'{"name": "T", "n": Infinity}',
                                  b'{"email": "big@acme.test", "n": 1e999}'])
def test_nan_and_infinity_are_not_json_to_the_admin_api(client: FlaskClient, db: Database, keyed, body) -> None:
    """RFC 8259 has no NaN or Infinity; Python's reader does, and no database JSON type stores them."""
    before = counts(db)
    response = client.post("/api/v1/orgs/acme/members", data=body, content_type="application/json",
                           headers={"Authorization": keyed["acme"]})
    assert response.status_code == 400 and response.content_type == "application/problem+json", response.json
    assert counts(db) == before


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/v1/orgs/acme/teams", {"name": "Nul\x00Team"}),
    ("POST", "/api/v1/orgs/acme/members", {"email": "nul@acme.test", "team_id": "x\x00"}),
    ("DELETE", "/api/v1/orgs/acme/members/user%00id", None),
    ("GET", "/api/v1/orgs/acme/members?after=%00", None),
])
def test_nul_characters_are_400_not_a_postgresql_500(client: FlaskClient, db: Database, keyed, method, path,
                                                     body) -> None:
    before = counts(db)
    response = client.open(path, method=method, json=body, headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["code"]) == (400, "invalid_value"), response.json
    assert counts(db) == before


@pytest.mark.parametrize("method,path,body,field", [
    ("POST", "/api/v1/orgs/acme/teams", {"name": None}, "name"),
    ("POST", "/api/v1/orgs/acme/teams", {"name": 42}, "name"),
    ("POST", "/api/v1/orgs/acme/members", {"email": {"value": "x@acme.test"}}, "email"),
    ("POST", "/api/v1/orgs/acme/members", {"email": "x@acme.test", "role": ""}, "role"),
    ("POST", "/api/v1/orgs/acme/members", {"email": "x@acme.test", "nickname": "X"}, "nickname"),
    ("POST", "/api/v1/orgs/acme/invitations", {"email": ["x@acme.test"]}, "email"),
    ("POST", "/api/v1/orgs/acme/scim-tokens", {"name": -4.5}, "name"),
    ("POST", "/api/v1/orgs/acme/api-keys", {"name": "k", "expires": "never"}, "expires"),
    ("POST", "/api/v1/orgs/acme/group-mappings", {"group_external_id": "g1", "team": "Default"}, "team"),
])
def test_wrong_types_and_unknown_fields_are_refused_not_coerced(client: FlaskClient, db: Database, keyed, method,
                                                                path, body, field) -> None:
    before = counts(db)
    response = client.open(path, method=method, json=body, headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["code"], response.json["field"]) == (400, "invalid_value", field)
    assert counts(db) == before  # no team called "None", no user called "{'value': ...}"


@pytest.mark.parametrize("body,status", [
    ({"role": "admin", "active": "no"}, 400),  # the role was changed before `active` was found wrong
    ({"role": "admin", "active": True}, 403),  # the role was committed, then reactivation hit the seat cap
])
def test_a_member_change_refused_in_part_changes_nothing(client: FlaskClient, db: Database, keyed, body,
                                                         status) -> None:
    auth = {"Authorization": keyed["acme"]}
    bob = client.post("/api/v1/orgs/acme/members", json={"email": "bob@acme.test"}, headers=auth).json
    assert client.patch(f"/api/v1/orgs/acme/members/{bob['id']}", json={"active": False}, headers=auth).status_code == 200
    assert client.patch("/api/v1/orgs/acme/settings", json={"max_seats": 1}, headers=auth).status_code == 200
    before = client.get("/api/v1/orgs/acme/members", headers=auth).json
    response = client.patch(f"/api/v1/orgs/acme/members/{bob['id']}", json=body, headers=auth)
    assert response.status_code == status, response.json
    assert client.get("/api/v1/orgs/acme/members", headers=auth).json == before


@pytest.mark.parametrize("query,field", [("limit=ten", "limit"), ("limit=1&limit=2", "limit"), ("afer=x", "afer")])
def test_member_list_parameters_are_checked_not_guessed(client: FlaskClient, keyed, query, field) -> None:
    response = client.get(f"/api/v1/orgs/acme/members?{query}", headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["field"]) == (400, field)


TEAM = "/api/v1/orgs/acme/teams/{team}"


@pytest.mark.parametrize("path,query,field", [
    ("/api/v1/orgs/acme/invitations", "status=pending&status=bogus", "status"),
    ("/api/v1/orgs/acme/outbox", "status=pending&status=sent", "status"),
    ("/api/v1/orgs/acme/api-keys", "kind=service&kind=personal", "kind"),
    ("/api/v1/orgs/acme/audit-events", "since=2020-01-01T00:00:00Z&since=2999-01-01T00:00:00Z", "since"),
    ("/api/v1/orgs/acme/audit-events", "outcome=success&outcome=refused", "outcome"),
    ("/api/v1/orgs/acme/audit-events", "cursor=a&cursor=b", "cursor"),
    ("/api/v1/orgs/acme/audit-events/export", "format=csv&format=jsonl", "format"),
    ("/api/v1/orgs/acme/audit-events/export", "until=2020-01-01T00:00:00Z&until=2999-01-01T00:00:00Z", "until"),
    (TEAM + "/wallet/spend", "by=key&by=member", "by"),
    (TEAM + "/wallet/spend", "period=2026-01-01T00:00:00Z&period=2026-02-01T00:00:00Z", "period"),
    (TEAM + "/wallet/ledger", "before=9&before=3", "before"),
    (TEAM, "after=a&after=b", "after"),
])
def test_a_repeated_single_valued_parameter_is_refused_naming_it(client: FlaskClient, keyed, acme: NewOrg, path: str,
                                                                 query: str, field: str) -> None:
    """As a repeated `limit` is: the second value is never silently dropped (a SIEM sending two `since`
    would read a selection it did not ask for; `status=bogus` was not even checked)."""
    url = path.format(team=acme.default_team_id)
    response = client.get(f"{url}?{query}", headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["field"]) == (400, field), response.json
    assert response.content_type == "application/problem+json"


def test_the_document_allows_the_nulls_the_api_takes_as_defaults(client: FlaskClient, keyed) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    body = {"email": "nully@acme.test", "role": None, "team_id": None}
    created = client.post("/api/v1/orgs/acme/members", json=body, headers={"Authorization": keyed["acme"]})
    assert created.status_code == 201 and created.json["role"] == "member"
    for name in ("NewMember", "NewInvitation"):
        assert all(None in schemas[name]["properties"][field].get("enum", [None]) and
                   "null" in schemas[name]["properties"][field]["type"] for field in ("role", "team_id")), name
    assert "null" in schemas["NewApiKey"]["properties"]["user_id"]["type"]


@pytest.mark.parametrize("path,body", [
    ("/api/v1/orgs/acme/members", {"email": "a\x01b@acme.test"}),
    ("/api/v1/orgs/acme/members", {"email": "x" * 321 + "@acme.test"}),
    ("/api/v1/orgs/acme/invitations", {"email": "bell\x07@acme.test"}),
])
def test_an_email_with_control_characters_or_too_long_is_refused(client: FlaskClient, db: Database, keyed, path,
                                                                  body) -> None:
    """One rule (identity.names.checked_email) for every way a member's email comes in: API, invitation, SCIM, SAML."""
    before = counts(db)
    response = client.post(path, json=body, headers={"Authorization": keyed["acme"]})
    assert (response.status_code, response.json["code"]) == (400, "invalid_value"), response.json
    assert counts(db) == before
