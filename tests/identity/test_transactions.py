"""No change without its event, no event without its change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from audit.log import pending_events
from audit.models import AuditEvent
from identity import keys, scim_credentials, team_deletion, teams, users
from identity.db import Database
from identity.models import Team
from identity.orgs import NewOrg
from tests.factories import counts, provision


class Injected(Exception):
    pass


def test_failure_after_change_before_commit_leaves_neither_change_nor_event(db: Database, acme: NewOrg,
                                                                           system: Actor) -> None:
    before = counts(db)
    with pytest.raises(Injected), db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Doomed")
        users.provision_user(session, system, acme.org.id, user_name="doomed@acme.test", source="manual")
        session.flush()  # the rows reached the database inside the transaction
        assert session.get(Team, team.id) is not None and len(pending_events(session)) >= 3
        raise Injected
    assert counts(db) == before


def test_failure_while_writing_the_events_rolls_back_the_change(db: Database, acme: NewOrg,
                                                               system: Actor, monkeypatch) -> None:
    import audit.log

    def broken_hash(fields):  # the chain cannot be written: the change must not land either
        raise Injected

    before = counts(db)
    monkeypatch.setattr(audit.log, "event_hash", broken_hash)
    with pytest.raises(Injected), db.transaction() as session:
        teams.create_team(session, system, acme.org.id, "Doomed")
    assert counts(db) == before


def test_events_carry_actor_request_context(db: Database, acme: NewOrg) -> None:
    actor = Actor("system", "system", "ops", request_id="req-123", ip="203.0.113.9", user_agent="curl/8")
    provision(db, actor, acme.org.id, "ctx@acme.test")
    with db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.created",
                                                          AuditEvent.target_display == "ctx@acme.test")).one()
    assert (event.actor_display, event.request_id, event.ip, event.user_agent) == ("ops", "req-123", "203.0.113.9", "curl/8")
    assert event.changes["user_name"] == "ctx@acme.test"


def test_audit_events_refuse_update_and_delete(db: Database, acme: NewOrg) -> None:
    from sqlalchemy import delete, update

    for statement in (update(AuditEvent).values(action="edited"), delete(AuditEvent)):
        with pytest.raises(Exception, match="append-only"), db.transaction() as session:
            session.execute(statement)


def _setup(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Platform")
        key = keys.create_api_key(session, system, acme.org.id, user_id=bob.id, team_id=acme.default_team_id,
                                  name="k", scopes=["inference"])
        token = scim_credentials.create_scim_token(session, system, acme.org.id)
    return {"bob": bob.id, "team": team.id, "key": key.id, "token": token.id, "default": acme.default_team_id}


SERVICES = [
    ("create_team", lambda s, a, o, ids: teams.create_team(s, a, o, "New"), "team.created"),
    ("rename_team", lambda s, a, o, ids: teams.rename_team(s, a, o, ids["team"], "Renamed"), "team.renamed"),
    ("delete_team", lambda s, a, o, ids: team_deletion.delete_team(s, a, o, ids["team"]), "team.deleted"),
    ("add_team_member", lambda s, a, o, ids: teams.add_team_member(s, a, o, ids["team"], ids["bob"]), "team.member_added"),
    ("provision_user", lambda s, a, o, ids: users.provision_user(s, a, o, user_name="n@acme.test", source="scim"), "user.created"),
    ("deactivate_user", lambda s, a, o, ids: users.deactivate_user(s, a, o, ids["bob"]), "user.deactivated"),
    ("delete_user", lambda s, a, o, ids: users.delete_user(s, a, o, ids["bob"]), "user.deleted"),
    ("change_role", lambda s, a, o, ids: users.change_role(s, a, o, ids["bob"], "admin"), "member.role_changed"),
    ("create_api_key", lambda s, a, o, ids: keys.create_api_key(
        s, a, o, user_id=ids["bob"], team_id=ids["default"],
        name="k2", scopes=[]), "api_key.created"),
    ("revoke_api_key", lambda s, a, o, ids: keys.revoke_api_key(s, a, o, ids["key"]), "api_key.revoked"),
    ("create_scim_token", lambda s, a, o, ids: scim_credentials.create_scim_token(s, a, o), "scim_token.created"),
    ("revoke_scim_token", lambda s, a, o, ids: scim_credentials.revoke_scim_token(s, a, o, ids["token"]), "scim_token.revoked"),
]


@pytest.mark.parametrize("name,call,action", SERVICES, ids=[s[0] for s in SERVICES])
def test_every_service_writes_its_event(db: Database, acme: NewOrg, system: Actor, name, call, action) -> None:
    ids = _setup(db, system, acme)
    with db.reading() as session:
        seen = session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    with db.transaction() as session:
        call(session, system, acme.org.id, ids)
    with db.reading() as session:
        new = list(session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == acme.org.id,
                                                                   AuditEvent.seq > seen)))
    assert action in new


def test_reactivation_is_audited_and_unblocks_only_deactivation_blocks(db: Database, acme: NewOrg, system: Actor) -> None:
    from identity.models import ApiKey

    ids = _setup(db, system, acme)
    with db.transaction() as session:
        other = keys.create_api_key(session, system, acme.org.id, user_id=ids["bob"], team_id=acme.default_team_id,
                                    name="other", scopes=[])
        keys.revoke_api_key(session, system, acme.org.id, other.id)
        users.deactivate_user(session, system, acme.org.id, ids["bob"])
    with db.reading() as session:
        assert session.get(ApiKey, ids["key"]).status == "blocked"
    with db.transaction() as session:
        users.reactivate_user(session, system, acme.org.id, ids["bob"])
    with db.reading() as session:
        assert session.get(ApiKey, ids["key"]).status == "active"
        assert session.get(ApiKey, other.id).status == "revoked"
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last.action == "user.reactivated"
