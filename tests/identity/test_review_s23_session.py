"""Review s23 (session): a team service key with `usage.read` against every operation of the admin API's
OpenAPI document: it may read its own team's wallet, spend and limits and say whom it speaks for, and
nothing else; a target id (another team, the org's owner, the key itself) gives it no more."""

from __future__ import annotations

import re
import uuid

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_wallet_usage import bearer, rows

ALLOWED = {("get", "/api/v1/key"), ("get", "/api/v1/orgs/{org}/teams/{team_id}/wallet"),
           ("get", "/api/v1/orgs/{org}/teams/{team_id}/wallet/spend"),
           ("get", "/api/v1/orgs/{org}/teams/{team_id}/wallet/limits")}
PUBLIC = {("get", "/api/v1/key"), ("get", "/api/v1/audit/public-key")}  # whom it speaks for; no credential


def operations(client: FlaskClient) -> list[tuple[str, str]]:
    document = client.get("/openapi.json").get_json()
    return sorted((method, path) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete"))


@pytest.mark.parametrize("whose", ["own", "other"])
def test_a_service_key_opens_only_its_teams_usage_reads(client: FlaskClient, db: Database, system: Actor,
                                                        acme: NewOrg, whose: str) -> None:
    with db.transaction() as session:
        job = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id,
                                      name="reporting", scopes=["usage.read", "inference"])
        other = teams.create_team(session, system, acme.org.id, "Research", creator=False)
    team = acme.default_team_id if whose == "own" else other.id
    values = {"org": acme.org.slug, "team_id": team, "user_id": acme.owner.id, "key_id": job.id}
    before = rows(db)
    opened = []
    for method, path in operations(client):
        url = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), path)
        answer = client.open(url, method=method.upper(), headers=bearer(job.secret),
                             json={} if method != "get" else None)
        assert answer.status_code < 500, (method, path, answer.status_code)
        if answer.status_code < 300 and not (whose == "own" and (method, path) in ALLOWED) \
                and (method, path) not in PUBLIC:
            opened.append((method, path, answer.status_code))
    assert opened == []
    for door in ("/scim/v2/Users", "/scim/v2/Groups", "/console/audit", "/console/keys", "/console/billing"):
        assert client.get(door, headers=bearer(job.secret)).status_code in (401, 303), door  # not its way in
    assert rows(db) == before


def test_a_base_url_path_with_a_doubled_slash_is_refused_or_stays_on_this_host(db: Database) -> None:
    from identity.web.app import create_app

    try:
        app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                          "BASE_URL": "https://sso.example.test//identity", "TESTING": True})
    except ValueError:
        return  # refused at start: what the README promises for anything that is not a plain path
    answer = app.test_client().get("/", environ_overrides={"PATH_INFO": "//identity/console/teams"})
    location = answer.headers.get("Location", "")
    assert not location.startswith("//"), location  # '//identity/': the browser goes to https://identity/


def test_a_password_with_a_raw_at_sign_is_not_printed_in_part(cli_env: dict[str, str]) -> None:
    from click.testing import CliRunner

    from identity.web.cli import main

    url = "postgresql://identity:Pa55@word-tail-secret@127.0.0.1:1/identity?connect_timeout=1"
    result = CliRunner(env={**cli_env, "DATABASE_URL": url}).invoke(main, ["db", "upgrade"])
    assert result.exit_code != 0
    assert "word-tail-secret" not in result.output, result.output
