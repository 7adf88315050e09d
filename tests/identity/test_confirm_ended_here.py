"""identity.sessions.confirm_role lets a write go on after it ended its own caller (a key it revoked,
a member whose sessions it ended) by the explicit records of those who end them
(identity.key_revocation.ended, sessions.sessions_ended), whichever way they end: a team's deletion,
an org's deletion.
"""

from __future__ import annotations

from audit import Actor
from identity import keys, org_lifecycle, team_deletion, teams
from identity.db import Database
from identity.models import ApiKey, Org, User
from identity.orgs import NewOrg
from identity.service import run
from identity.vocabulary import KeyStatus, Role


def _key_actor(db: Database, system: Actor, acme: NewOrg, team_id: str) -> Actor:
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                     team_id=team_id, name="k", scopes=["admin"])
    with db.transaction() as session:
        return keys.verify_api_key(session, issued.secret).actor()


def test_a_key_that_deletes_its_own_team_is_not_refused(db: Database, system: Actor, acme: NewOrg) -> None:
    """The owner's key for team Research deletes Research: the deletion revokes the key
    (key_revocation.revoke_keys_of_team), which is no refusal."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id)
    as_key = _key_actor(db, system, acme, team.id)
    run(db, as_key, team_deletion.delete_team, acme.org.id, team.id, confirm=team.name)
    with db.reading() as session:
        assert session.get_one(ApiKey, as_key.id).status == KeyStatus.REVOKED


def test_an_owner_who_deletes_her_org_with_her_key_is_not_refused(db: Database, system: Actor, acme: NewOrg) -> None:
    as_key = _key_actor(db, system, acme, acme.default_team_id)
    run(db, as_key, org_lifecycle.delete_org, acme.org.id, confirm=acme.org.slug)
    with db.reading() as session:
        assert session.get_one(Org, acme.org.id).deleted_at is not None
        assert session.get_one(ApiKey, as_key.id).status == KeyStatus.REVOKED


def test_an_owner_who_deletes_her_org_from_her_session_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Her own membership removed with the org's (her sessions ended by this write): no refusal."""
    owner = acme.owner
    as_owner = Actor("user", owner.id, owner.user_name, org_id=acme.org.id, role=Role.OWNER)
    run(db, as_owner, org_lifecycle.delete_org, acme.org.id, confirm=acme.org.slug)
    with db.reading() as session:
        assert session.get_one(Org, acme.org.id).deleted_at is not None
        assert session.get_one(User, owner.id).deleted_at is not None
