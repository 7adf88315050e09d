"""Orgs, teams and members: the foundation's rules, each change with its audit event."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from audit import Actor
from identity import mappings, orgs, team_deletion, teams, users
from identity.db import Database
from identity.errors import Conflict, InvalidValue, LastOwner, NotFound, PermissionDenied
from identity.models import Org, Team
from identity.orgs import NewOrg
from tests.factories import actions, counts, provision


def test_create_org_makes_default_team_owner_and_events(db: Database, acme: NewOrg) -> None:
    with db.reading() as session:
        found = list(session.scalars(select(Team).where(Team.org_id == acme.org.id)))
        assert [t.name for t in found] == ["Default"] and found[0].is_default
        assert users.org_role(session, acme.owner.id) == "owner"
        assert users.team_roles(session, acme.owner.id) == {acme.default_team_id: "member"}
        assert session.get(Org, acme.org.id).seats_used == 1
    assert actions(db, acme.org.id) == ["org.created", "team.created", "user.created", "seat.assigned"]


def test_team_id_is_slug_with_suffix_and_survives_rename(db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Data Science!")
    assert re.fullmatch(r"data-science-[0-9a-f]{8}", team.id)
    with db.transaction() as session:
        renamed = teams.rename_team(session, system, acme.org.id, team.id, "ML Platform")
    assert renamed.id == team.id
    with db.reading() as session:
        assert session.get(Team, team.id).name == "ML Platform"
    assert actions(db, acme.org.id)[-2:] == ["team.created", "team.renamed"]


def test_user_name_unique_case_insensitively_per_org(db: Database, acme: NewOrg, system: Actor) -> None:
    provision(db, system, acme.org.id, "Alice@Example.com")
    with pytest.raises(Conflict):
        provision(db, system, acme.org.id, "alice@EXAMPLE.com")
    with db.transaction() as session:
        other = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    provision(db, system, other.org.id, "alice@example.com")  # another org: another identity


def test_deleted_user_name_can_be_provisioned_again(db: Database, acme: NewOrg, system: Actor) -> None:
    alice = provision(db, system, acme.org.id, "alice@example.com")
    with db.transaction() as session:
        users.delete_user(session, system, acme.org.id, alice.id)
    again = provision(db, system, acme.org.id, "ALICE@example.com")
    assert again.id != alice.id


@pytest.mark.parametrize("change", ["delete", "deactivate", "demote"])
def test_last_active_owner_is_kept(db: Database, acme: NewOrg, system: Actor, change: str) -> None:
    calls = {
        "delete": lambda s: users.delete_user(s, system, acme.org.id, acme.owner.id),
        "deactivate": lambda s: users.deactivate_user(s, system, acme.org.id, acme.owner.id),
        "demote": lambda s: users.change_role(s, system, acme.org.id, acme.owner.id, "admin"),
    }
    before = counts(db)
    with pytest.raises(LastOwner), db.transaction() as session:
        calls[change](session)
    assert counts(db) == before
    # With a second active owner, the same change goes through.
    provision(db, system, acme.org.id, "second@acme.test", role="owner")
    with db.transaction() as session:
        calls[change](session)


def test_inactive_second_owner_does_not_count(db: Database, acme: NewOrg, system: Actor) -> None:
    second = provision(db, system, acme.org.id, "second@acme.test", role="owner")
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, second.id)
    with pytest.raises(LastOwner), db.transaction() as session:
        users.delete_user(session, system, acme.org.id, acme.owner.id)


def test_role_change_is_audited_with_before_and_after(db: Database, acme: NewOrg, system: Actor) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        assert users.change_role(session, system, acme.org.id, bob.id, "developer") == "member"
        assert users.change_role(session, system, acme.org.id, bob.id, "admin") == "admin"
    assert actions(db, acme.org.id)[-1] == "member.role_changed"  # the no-op alias change wrote nothing


def test_admin_cannot_make_owners_member_cannot_manage(db: Database, acme: NewOrg, system: Actor) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    member = provision(db, system, acme.org.id, "member@acme.test")
    as_admin = Actor("user", admin.id, admin.user_name, org_id=acme.org.id, role="admin")
    as_member = Actor("user", member.id, member.user_name, org_id=acme.org.id, role="member")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        users.change_role(session, as_admin, acme.org.id, member.id, "owner")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        teams.create_team(session, as_member, acme.org.id, "Rogue")
    with db.transaction() as session:
        users.change_role(session, as_admin, acme.org.id, member.id, "viewer")


def test_actor_of_another_org_is_refused(db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    outsider = Actor("user", globex.owner.id, "owner@globex.test", org_id=globex.org.id, role="owner")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        teams.create_team(session, outsider, acme.org.id, "Intruders")


BAD_INPUT = [
    ("unknown org", lambda s, a, o: users.provision_user(s, a, "no-such-org", user_name="x@y.z", source="manual"), NotFound),
    ("invalid role", lambda s, a, o: users.provision_user(s, a, o.org.id, user_name="x@y.z", role="emperor", source="manual"), InvalidValue),
    ("empty userName", lambda s, a, o: users.provision_user(s, a, o.org.id, user_name="  ", source="manual"), InvalidValue),
    ("duplicate team", lambda s, a, o: teams.create_team(s, a, o.org.id, "default"), Conflict),
    ("empty team name", lambda s, a, o: teams.create_team(s, a, o.org.id, " "), InvalidValue),
    ("unknown team", lambda s, a, o: teams.rename_team(s, a, o.org.id, "nope-1234", "X"), NotFound),
    ("delete Default", lambda s, a, o: team_deletion.delete_team(s, a, o.org.id, o.default_team_id), InvalidValue),
    ("duplicate org", lambda s, a, o: orgs.create_org(s, a, "Acme", owner_email="x@acme.test"), Conflict),
    ("bad owner email", lambda s, a, o: orgs.create_org(s, a, "Initech", owner_email="nobody"), InvalidValue),
    ("unknown user", lambda s, a, o: users.change_role(s, a, o.org.id, "no-such-user", "admin"), NotFound),
]


@pytest.mark.parametrize("case,call,error", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_writes_nothing(db: Database, acme: NewOrg, system: Actor, case, call, error) -> None:
    before = counts(db)
    with pytest.raises(error) as raised, db.transaction() as session:
        call(session, system, acme)
    assert raised.value.message
    assert counts(db) == before


def test_a_team_with_keys_invitations_and_a_mapping_can_be_deleted(db: Database, acme: NewOrg, system: Actor) -> None:
    """Its keys are revoked, the mapping into it deleted, its pending invitation expired: all audited,
    the records kept with their team unset, and the log still explains the data."""
    from identity import invitations, keys
    from identity.errors import Unauthenticated
    from identity.models import ApiKey, GroupMapping, Invitation, OutboxMail
    from identity.reconcile import reconcile

    member = provision(db, system, acme.org.id, "keyholder@acme.test")
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Doomed")
        teams.add_team_member(session, system, acme.org.id, team.id, member.id, "admin")
        live = keys.create_api_key(session, system, acme.org.id, user_id=member.id, team_id=team.id,
                                   name="live", scopes=["inference"])
        old = keys.create_api_key(session, system, acme.org.id, user_id=member.id, team_id=team.id,
                                  name="old", scopes=["inference"])
        keys.revoke_api_key(session, system, acme.org.id, old.id)
        invitation, link = invitations.invite(session, system, acme.org.id, email="later@acme.test", team_id=team.id)
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gDoomed", team_id=team.id,
                              team_role="member")
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team.id)
    assert actions(db, acme.org.id)[-3:] == ["group_mapping.deleted", "invitation.expired", "team.deleted"]
    with db.reading() as session:
        assert session.get(Team, team.id) is None
        assert {k.id: (k.status, k.team_id) for k in session.scalars(select(ApiKey).where(ApiKey.user_id == member.id))} \
            == {live.id: ("revoked", None), old.id: ("revoked", None)}
        assert (session.get(Invitation, invitation.id).status, session.get(Invitation, invitation.id).team_id) \
            == ("expired", None)
        # Its mail (queued, no SMTP here) is cancelled with it: nothing mails a link to a team that is gone.
        assert session.scalars(select(OutboxMail.status).where(OutboxMail.ref_id == invitation.id)).all() == [
            "cancelled"]
        assert session.scalars(select(GroupMapping).where(GroupMapping.org_id == acme.org.id)).all() == []
        with pytest.raises(Unauthenticated):
            keys.verify_api_key(session, live.secret)
        assert reconcile(session, acme.org.id) == []
    with pytest.raises(InvalidValue), db.transaction() as session:
        invitations.accept(session, system, link)


def test_a_manual_role_over_a_group_role_is_audited_and_reconciled(db: Database, acme: NewOrg, system: Actor) -> None:
    """The group makes the member an admin; a manual owner grant goes over it, and is what the event names.
    (A manual role *under* the group's is refused: tests/identity/test_trust.py.)"""
    from sqlalchemy import update

    from audit.models import AuditEvent
    from identity import groups
    from identity.models import RoleGrant
    from identity.reconcile import reconcile

    member = provision(db, system, acme.org.id, "grouped@acme.test")
    with db.transaction() as session:
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gAdmins", org_role="admin")
        groups.create_group(session, system, acme.org.id, display_name="Admins", external_id="00gAdmins",
                            member_ids=[member.id])
    with db.transaction() as session:
        assert users.change_role(session, system, acme.org.id, member.id, "owner") == "owner"
    with db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.org_id == acme.org.id)
                                .order_by(AuditEvent.seq.desc())).first()
        assert event.action == "member.role_changed"
        assert event.changes["role"] == {"before": "admin", "after": "owner"}
        assert event.changes["manual_role"] == {"before": "member", "after": "owner"}
        assert reconcile(session, acme.org.id) == []
    with db.transaction() as session:  # the same change, made behind the log's back, is found
        session.execute(update(RoleGrant).where(RoleGrant.user_id == member.id, RoleGrant.source == "manual",
                                                RoleGrant.team_id.is_(None)).values(role="member"))
    with db.reading() as session:
        assert len(reconcile(session, acme.org.id)) == 1
