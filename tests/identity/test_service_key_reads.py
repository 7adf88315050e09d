"""A team service key with `usage.read` (README: "a reporting job's key") reads its own team's
wallet, spend and limits, and nothing of another team or org (identity.roles.refusal binds it to
its team); the admin API and the key check agree on what it is."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, orgs, team_deletion, teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_wallet_usage import World, bearer, world  # noqa: F401  (world: the fixture)


@dataclass
class Job:
    key: dict[str, str]
    own: str  # its team's wallet path
    other_team: str
    other_org: str


@pytest.fixture
def job(db: Database, system: Actor, acme: NewOrg) -> Job:
    with db.transaction() as session:
        key = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="reporting",
                                      scopes=["usage.read"])
        other = teams.create_team(session, system, acme.org.id, "Research", creator=False)
        rival = orgs.create_org(session, system, "Rival", owner_email="o@rival.test")
    prefix = f"/api/v1/orgs/{acme.org.slug}/teams"
    return Job(bearer(key.secret), f"{prefix}/{acme.default_team_id}/wallet", f"{prefix}/{other.id}/wallet",
               f"/api/v1/orgs/{rival.org.slug}/teams/{rival.default_team_id}/wallet")


READS = ["", "/spend", "/spend?by=member", "/spend?by=period", "/limits"]


@pytest.mark.parametrize("read", READS)
def test_a_service_key_reads_its_own_teams_usage(client: FlaskClient, job: Job, read: str) -> None:
    answer = client.get(job.own + read, headers=job.key)
    assert answer.status_code == 200, answer.get_json()


@pytest.mark.parametrize("read", READS)
def test_a_service_key_reads_no_other_teams_usage(client: FlaskClient, job: Job, read: str) -> None:
    refused = client.get(job.other_team + read, headers=job.key)
    assert refused.status_code == 403 and "its own team" in refused.get_json()["detail"], refused.get_json()
    assert client.get(job.other_org + read, headers=job.key).status_code == 404


def test_a_service_key_reads_no_members_spend_across_teams(client: FlaskClient, job: Job, acme: NewOrg,
                                                           world: World) -> None:  # noqa: F811
    """A member's spend spans every team they hold keys in: not one team's read."""
    path = f"/api/v1/orgs/{acme.org.slug}/members/{world.member_id}/spend"
    assert client.get(path, headers=world.owner).status_code == 200
    assert client.get(path, headers=job.key).status_code == 403


def test_a_service_key_says_whom_it_speaks_for(client: FlaskClient, job: Job, acme: NewOrg) -> None:
    found = client.get("/api/v1/key", headers=job.key).get_json()
    assert (found["user"], found["team_id"], found["role"], found["scopes"]) == (
        None, acme.default_team_id, "member", ["usage.read"])


def test_a_service_key_without_usage_read_or_revoked_reads_nothing(client: FlaskClient, db: Database, system: Actor,
                                                                   acme: NewOrg, job: Job) -> None:
    with db.transaction() as session:
        gateway_only = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id,
                                               name="gateway", scopes=["inference"])
    assert client.get(job.own, headers=bearer(gateway_only.secret)).status_code == 403
    assert client.get(f"/api/v1/orgs/{acme.org.slug}/members", headers=job.key).status_code == 403  # no directory.read
    with db.transaction() as session:
        research = teams.create_team(session, system, acme.org.id, "Ops", creator=False)
        doomed = keys.create_service_key(session, system, acme.org.id, team_id=research.id, name="ops",
                                         scopes=["usage.read"])
        team_deletion.delete_team(session, system, acme.org.id, research.id, confirm="Ops")
    assert client.get(f"/api/v1/orgs/{acme.org.slug}/teams/{research.id}/wallet",
                      headers=bearer(doomed.secret)).status_code == 401
