"""`identity keys settle` (and `identity db upgrade`, `identity serve` after migrating): the keys a release
before 2026-12-06 left `active` or `blocked` when an IdP group change took their holder's team away are
revoked (`left_team`), one audited transaction per org, the audit log still explaining the data.

The old state is built as that release left it: the holder's grant in the key's team gone (deleted with
SQL here), the key untouched. README, "Upgrading from a release before 2026-12-06"; docs/audit.md 2.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from audit import Actor
from audit.actor import system_actor
from audit.models import AuditEvent
from identity import gateway, key_settling, keys, org_lifecycle, orgs, teams, users
from identity.db import Database
from identity.errors import PermissionDenied
from identity.keys import Issued
from identity.models import ApiKey, RoleGrant
from identity.orgs import NewOrg
from identity.reconcile import reconcile
from identity.web.cli import main
from tests.factories import provision
from tests.identity.test_serve import BIN, ROOT, _free_port, _stop, _wait_healthy


@dataclass
class Left:
    """An org as the old release left it, and the keys it holds."""

    org_id: str
    platform: str
    dev_id: str
    eve_id: str
    stale: Issued    # dev's key for Platform, whose grant there is gone: active
    blocked: Issued  # eve's key for Platform, blocked by her deactivation, her grant there gone
    kept: Issued     # dev's key for Default, where dev still is
    owner: Issued    # the owner's key for Default
    service: Issued  # Platform's service key: no holder, nobody's leaving touches it

    @property
    def settled(self) -> list[Issued]:
        return [self.stale, self.blocked]

    @property
    def untouched(self) -> list[Issued]:
        return [self.kept, self.owner, self.service]


def left_behind(db: Database, system: Actor, org: NewOrg) -> Left:
    domain = org.owner.email.split("@")[1]
    dev = provision(db, system, org.org.id, f"dev@{domain}")
    eve = provision(db, system, org.org.id, f"eve@{domain}")
    with db.transaction() as session:
        platform = teams.create_team(session, system, org.org.id, "Platform").id
        for user in (dev, eve):
            teams.add_team_member(session, system, org.org.id, platform, user.id)

        def key(user_id: str, team_id: str) -> Issued:
            return keys.create_api_key(session, system, org.org.id, user_id=user_id, team_id=team_id, name="k",
                                       scopes=["inference"])

        made = Left(org.org.id, platform, dev.id, eve.id, key(dev.id, platform), key(eve.id, platform),
                    key(dev.id, org.default_team_id), key(org.owner.id, org.default_team_id),
                    keys.create_service_key(session, system, org.org.id, team_id=platform, name="svc",
                                            scopes=["inference"]))
    with db.transaction() as session:
        users.deactivate_user(session, system, org.org.id, eve.id)
    with db.begin() as conn:  # what the old release's group change did: the grant went, the keys stayed
        conn.execute(delete(RoleGrant).where(RoleGrant.user_id.in_([dev.id, eve.id]), RoleGrant.team_id == platform))
    return made


def status(db: Database, issued: Issued) -> tuple[str, str | None]:
    with db.reading() as session:
        key = session.get_one(ApiKey, issued.id)
        return str(key.status), None if key.status_reason is None else str(key.status_reason)


def events(db: Database, org_id: str) -> list[AuditEvent]:
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id).order_by(AuditEvent.seq)))


def findings(db: Database, org_id: str) -> set[str]:
    with db.reading() as session:
        return {str(finding) for finding in reconcile(session, org_id)}


def check(client: FlaskClient, credential: str, issued: Issued) -> dict:
    answer = client.post("/api/v1/keys/verify", json={"key": issued.secret},
                         headers={"Authorization": f"Bearer {credential}"})
    assert answer.status_code == 200, answer.data
    return answer.get_json()


@pytest.fixture
def credential(db: Database, system: Actor) -> str:
    with db.transaction() as session:
        return gateway.create_credential(session, system, name="gw").secret


def other_org(db: Database, system: Actor, name: str) -> NewOrg:
    with db.transaction() as session:
        return orgs.create_org(session, system, name, owner_email=f"owner@{name.lower()}.test")


def test_keys_settle_revokes_the_keys_left_behind_for_good_one_audited_event_per_org(
        runner: CliRunner, client: FlaskClient, db: Database, system: Actor, acme: NewOrg, credential: str) -> None:
    """Before: the keys stayed `active`/`blocked` until the holder's groups next changed; the key check
    refused them only for want of a membership, so putting dev back in Platform (reactivating eve) made
    the same secrets work again. After: revoked for good, named by prefix in one event per org."""
    left = left_behind(db, system, acme)
    globex = left_behind(db, system, other_org(db, system, "Globex"))
    gone = other_org(db, system, "Initech")
    with db.transaction() as session:
        org_lifecycle.delete_org(session, system, gone.org.id, confirm=gone.org.slug)
    assert status(db, left.stale) == ("active", None) and status(db, left.blocked) == ("blocked", "deactivation")
    unexplained = findings(db, acme.org.id)  # the grant deleted with SQL: the only thing no event explains
    seen = {org.org_id: len(events(db, org.org_id)) for org in (left, globex)}
    assert check(client, credential, left.stale) == {"valid": False, "reason": "revoked"}  # no answer changes
    gone_events = len(events(db, gone.org.id))

    result = runner.invoke(main, ["keys", "settle"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines  # one line per org, the deleted one included
    for org, line in zip((left, globex), lines[:2], strict=True):
        assert line.startswith(f"org {'acme' if org is left else 'globex'}: revoked 2 key(s)"), line
        assert all(issued.prefix in line for issued in org.settled) and org.stale.secret not in line
        assert all(status(db, issued) == ("revoked", "left_team") for issued in org.settled)
        assert all(status(db, issued) == ("active", None) for issued in org.untouched)
        [event] = events(db, org.org_id)[seen[org.org_id]:]
        assert (event.action, event.actor_type, event.target_type, event.target_id) == (
            "api_key.revoked_left_team", "system", "org", org.org_id)
        assert event.changes == {"keys_revoked": sorted(i.prefix for i in org.settled), "reason": "left_team"}
        assert not any(issued.secret in json.dumps(event.changes) for issued in org.settled)
    assert lines[2] == "org initech: revoked no key: every key's holder is in the key's team"
    assert len(events(db, gone.org.id)) == gone_events, "a deleted org's log took an event"

    assert findings(db, acme.org.id) == unexplained, "the replay does not follow api_key.revoked_left_team"
    assert not [f for f in unexplained if f.startswith("api_key")]
    verified = runner.invoke(main, ["audit", "verify", "--org", "acme", "--no-reconcile"])
    assert verified.exit_code == 0 and "intact" in verified.stdout, verified.output

    with db.transaction() as session:  # dev back in Platform, eve reactivated: their old secrets stay dead
        teams.add_team_member(session, system, acme.org.id, left.platform, left.dev_id)
        teams.add_team_member(session, system, acme.org.id, left.platform, left.eve_id)
        users.reactivate_user(session, system, acme.org.id, left.eve_id)
    for issued in left.settled:
        assert check(client, credential, issued) == {"valid": False, "reason": "revoked"}
    for issued in left.untouched:
        assert check(client, credential, issued)["valid"] is True

    before = {org.org_id: len(events(db, org.org_id)) for org in (left, globex)}
    again = runner.invoke(main, ["keys", "settle"])
    assert again.exit_code == 0, again.output
    assert all(line.endswith("revoked no key: every key's holder is in the key's team")
               for line in again.stdout.splitlines()), again.stdout
    assert {org.org_id: len(events(db, org.org_id)) for org in (left, globex)} == before


def test_keys_settle_for_one_org_leaves_the_others_alone(runner: CliRunner, db: Database, system: Actor,
                                                         acme: NewOrg) -> None:
    left = left_behind(db, system, acme)
    globex = left_behind(db, system, other_org(db, system, "Globex"))
    globex_events = len(events(db, globex.org_id))
    result = runner.invoke(main, ["keys", "settle", "--org", "acme"])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["org acme"]
    assert all(status(db, issued) == ("revoked", "left_team") for issued in left.settled)
    assert status(db, globex.stale) == ("active", None) and status(db, globex.blocked) == ("blocked", "deactivation")
    assert len(events(db, globex.org_id)) == globex_events
    unknown = runner.invoke(main, ["keys", "settle", "--org", "no-such-org"])
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: no org with slug"), unknown.output


def test_keys_settle_dry_run_lists_the_keys_and_writes_nothing(runner: CliRunner, db: Database, system: Actor,
                                                               acme: NewOrg) -> None:
    left = left_behind(db, system, acme)
    before = len(events(db, acme.org.id))
    result = runner.invoke(main, ["keys", "settle", "--dry-run"])
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert line.startswith("org acme: would revoke 2 key(s)"), line
    assert f"{left.stale.prefix} (dev@acme.test, team {left.platform}, active)" in line
    assert f"{left.blocked.prefix} (eve@acme.test, team {left.platform}, blocked)" in line
    assert left.stale.secret not in result.output
    assert status(db, left.stale) == ("active", None) and status(db, left.blocked) == ("blocked", "deactivation")
    assert len(events(db, acme.org.id)) == before


def test_db_upgrade_settles_the_keys_left_behind(runner: CliRunner, db: Database, system: Actor,
                                                  acme: NewOrg) -> None:
    """Run after migrating, so that a deployment that upgrades is settled without knowing it must be."""
    left = left_behind(db, system, acme)
    before = len(events(db, acme.org.id))
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("org ")]
    assert line.startswith("org acme: revoked 2 key(s) whose holder left the key's team (left_team): "), line
    assert all(issued.prefix in line for issued in left.settled), line
    assert all(status(db, issued) == ("revoked", "left_team") for issued in left.settled)
    assert all(status(db, issued) == ("active", None) for issued in left.untouched)
    [event] = events(db, acme.org.id)[before:]
    assert (event.action, event.actor_display) == ("api_key.revoked_left_team", "identity db upgrade")
    again = runner.invoke(main, ["db", "upgrade"])
    assert again.exit_code == 0 and "revoked" not in again.stderr, again.output
    assert len(events(db, acme.org.id)) == before + 1


def test_serve_settles_the_keys_left_behind_before_it_serves(db: Database, system: Actor, acme: NewOrg,
                                                              cli_env: dict[str, str]) -> None:
    left = left_behind(db, system, acme)
    port = _free_port()
    env = {**os.environ, **cli_env, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
    finally:
        _stop(proc)
    assert all(status(db, issued) == ("revoked", "left_team") for issued in left.settled)
    assert [e.action for e in events(db, acme.org.id)][-1] == "api_key.revoked_left_team"


def test_settling_is_the_operators(db: Database, system: Actor, acme: NewOrg) -> None:
    """An org's owner (a person, through the admin API or the console) may not run it."""
    left = left_behind(db, system, acme)
    owner = Actor(type="user", id=acme.owner.id, display="owner@acme.test", org_id=acme.org.id, role="owner")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        key_settling.settle_keys(session, owner, acme.org.id)
    assert status(db, left.stale) == ("active", None)
    with db.transaction() as session:
        assert key_settling.settle_keys(session, system_actor("tests"), acme.org.id) == sorted(
            i.prefix for i in left.settled)
