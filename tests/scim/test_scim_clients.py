"""OAuth clients for SCIM (and SCIM tokens) can be listed and revoked from the CLI and the admin API.

Revoking a client ends the access tokens it was issued at once: the next SCIM request is a 401.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, orgs, scim_credentials
from identity.db import Database
from identity.errors import PermissionDenied
from identity.web.cli import main
from tests.factories import actions
from tests.scim.client import Scim, scim_for


def _client(runner: CliRunner, slug: str, name: str) -> dict[str, str]:
    result = runner.invoke(main, ["scim", "client", "create", "--org", slug, "--name", name, "--json"])
    assert result.exit_code == 0, result.output
    made: dict[str, str] = json.loads(result.stdout)
    return made


def _access_token(client: FlaskClient, made: dict[str, str]) -> str:
    answer = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": made["client_id"],
                                               "client_secret": made["client_secret"]})
    assert answer.status_code == 200, answer.json
    token: str = answer.json["access_token"]
    return token


def _listed(runner: CliRunner, slug: str) -> list[dict[str, str]]:
    result = runner.invoke(main, ["scim", "client", "list", "--org", slug, "--json"])
    assert result.exit_code == 0, result.output
    found: list[dict[str, str]] = json.loads(result.stdout)["scim_clients"]
    return found


def test_the_cli_lists_clients_and_revoking_one_ends_its_access_tokens_at_once(
        client: FlaskClient, runner: CliRunner, db: Database, system: Actor) -> None:
    scim = scim_for(db, client, system, "Cli")
    entra, other = _client(runner, "cli", "Entra"), _client(runner, "cli", "Other")
    bearer = Scim(client, _access_token(client, entra), scim.org_id)
    still = Scim(client, _access_token(client, other), scim.org_id)
    assert bearer.get("/Users").status_code == 200
    listed = _listed(runner, "cli")
    assert [(c["client_id"], c["name"], c["revoked"]) for c in listed] == [
        (entra["client_id"], "Entra", None), (other["client_id"], "Other", None)]
    plain = runner.invoke(main, ["scim", "client", "list", "--org", "cli"])
    for output in (json.dumps(listed), plain.stdout):
        assert entra["client_secret"] not in output and other["client_secret"] not in output
    assert entra["client_id"] in plain.stdout and "active" in plain.stdout

    revoked = runner.invoke(main, ["scim", "client", "revoke", "--org", "cli", entra["client_id"]])
    assert revoked.exit_code == 0, revoked.output
    assert bearer.get("/Users").status_code == 401  # the token it already holds, on its very next request
    assert bearer.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                  "userName": "late@x.test"}).status_code == 401
    assert still.get("/Users").status_code == 200  # the other client is untouched
    assert [c["revoked"] is not None for c in _listed(runner, "cli")] == [True, False]
    assert actions(db, scim.org_id)[-1] == "scim_client.revoked"
    again = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": entra["client_id"],
                                              "client_secret": entra["client_secret"]})
    assert again.status_code in (400, 401) and "access_token" not in (again.json or {})
    # By its row id too; an unknown client or org is an error, not a silent success.
    assert runner.invoke(main, ["scim", "client", "revoke", "--org", "cli", listed[1]["id"]]).exit_code == 0
    assert still.get("/Users").status_code == 401
    assert runner.invoke(main, ["scim", "client", "revoke", "--org", "cli", "scimcs_nosuch"]).exit_code == 1
    assert runner.invoke(main, ["scim", "client", "list", "--org", "nosuch"]).exit_code == 1


def _owner_key(db: Database, system: Actor, name: str) -> tuple[Scim, dict[str, str]]:
    """An org with a SCIM token, and its owner's admin-API key."""
    with db.transaction() as session:
        new = orgs.create_org(session, system, name, owner_email=f"owner@{name.lower()}.test")
        token = scim_credentials.create_scim_token(session, system, new.org.id)
        key = keys.create_api_key(session, system, new.org.id, user_id=new.owner.id, team_id=new.default_team_id,
                                  name="k", scopes=["admin"])
    return Scim(None, token.secret, new.org.id), {"Authorization": f"Bearer {key.secret}"}  # type: ignore[arg-type]


def test_the_admin_api_lists_clients_and_tokens_without_secrets_and_revokes_a_client(
        client: FlaskClient, runner: CliRunner, db: Database, system: Actor) -> None:
    scim, auth = _owner_key(db, system, "Api")
    with db.transaction() as session:
        other = orgs.create_org(session, system, "Other", owner_email="owner@other.test")
        foreign = scim_credentials.create_scim_client(session, system, other.org.id, name="Foreign")
    made = _client(runner, "api", "Entra")
    bearer = Scim(client, _access_token(client, made), scim.org_id)

    listed = client.get("/api/v1/orgs/api/scim-clients", headers=auth)
    assert listed.status_code == 200
    (entry,) = listed.json["scim_clients"]
    assert (entry["client_id"], entry["name"], entry["revoked"]) == (made["client_id"], "Entra", None)
    assert made["client_secret"] not in listed.get_data(as_text=True)
    tokens = client.get("/api/v1/orgs/api/scim-tokens", headers=auth)
    assert tokens.status_code == 200 and len(tokens.json["scim_tokens"]) == 1
    assert scim.token not in tokens.get_data(as_text=True)
    assert scim.token.startswith(tokens.json["scim_tokens"][0]["prefix"])
    assert tokens.json["scim_tokens"][0]["revoked"] is None

    # Another org's client is not found under this org, and stays live.
    assert client.delete(f"/api/v1/orgs/api/scim-clients/{foreign.id}", headers=auth).status_code == 404
    assert client.delete("/api/v1/orgs/api/scim-clients/nosuch", headers=auth).status_code == 404
    assert client.get("/api/v1/orgs/other/scim-clients", headers=auth).status_code == 404
    assert bearer.get("/Users").status_code == 200
    assert client.delete(f"/api/v1/orgs/api/scim-clients/{entry['id']}", headers=auth).status_code == 204
    assert bearer.get("/Users").status_code == 401
    assert client.get("/api/v1/orgs/api/scim-clients", headers=auth).json["scim_clients"][0]["revoked"] is not None
    assert client.delete(f"/api/v1/orgs/api/scim-clients/{entry['id']}", headers=auth).status_code == 204  # no-op
    assert actions(db, scim.org_id).count("scim_client.revoked") == 1
    with db.reading() as session:
        assert scim_credentials.check_scim_client(session, foreign.prefix, None) is not None


@pytest.mark.parametrize("role,allowed", [("owner", True), ("admin", True), ("member", False), ("viewer", False)])
def test_listing_credentials_needs_trust_read(db: Database, system: Actor, role: str, allowed: bool) -> None:
    with db.transaction() as session:
        new = orgs.create_org(session, system, "Listing", owner_email="owner@listing.test")
        scim_credentials.create_scim_client(session, system, new.org.id)
    actor = Actor("user", "someone", "someone", org_id=new.org.id, role=role)
    foreign = Actor("user", "someone", "someone", org_id="another-org", role="owner")
    with db.reading() as session:
        for listing in (scim_credentials.list_scim_clients, scim_credentials.list_scim_tokens):
            if allowed:
                assert listing(session, actor, new.org.id) is not None
            else:
                with pytest.raises(PermissionDenied):
                    listing(session, actor, new.org.id)
            with pytest.raises(PermissionDenied):
                listing(session, foreign, new.org.id)
