"""A write made with a role lost while it waited (session 20): sessions.confirm_role's two gaps.

A session's write confirmed its caller's role once it held the org's lock; a demotion by an IdP
group change (which takes no org lock) that the write then waited for was not read again. An API
key's write was not confirmed at all: its holder demoted or deactivated, or the key revoked, while
it waited. The races run on PostgreSQL, real concurrent transactions under READ COMMITTED; each holds one change
uncommitted, starts the write behind it, waits until it waits for a lock, then commits the change.
The last tests (both backends) are the writes that lower their own caller's role or end their own
key: not refused; and what the confirmation costs.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from identity import group_membership, groups, keys, mappings, org_lifecycle, teams, users
from identity.db import Database
from identity.grants import org_role
from identity.models import ApiKey, User
from identity.orgs import NewOrg
from identity.service import run
from identity.sessions import Lifetime, create_session, verify_session
from identity.vocabulary import KeyStatus, Role, SessionMethod
from tests.factories import admin_and_member, admins_group, behind, provision
from tests.statements import audit_at_commit, statements

RACE = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")



def _patch(org_id: str, group_id: str, system: Actor, *, removed: str, added: str):
    """The IdP's PATCH of a group: `removed` out, `added` in (added's row share-locked first: lock_live)."""
    return lambda session: groups.change_group(session, system, org_id, group_id,
                                               groups.GroupChange(removed=(removed,), added=(added,)))


def _active(db: Database, user_id: str) -> bool:
    with db.reading() as session:
        return session.get_one(User, user_id).active


@RACE
def test_an_admins_write_under_the_org_lock_that_waited_for_the_idp_taking_her_admin_role_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann is an admin through the IdP group Admins. From her session she deactivates Dev
    (users.deactivate_user): the org's lock, her role confirmed there (admin), then Dev's row. The IdP
    meanwhile PATCHes Admins: Ann out, Dev in (groups.change_group: no org lock; Dev's row share-locked
    first). The deactivation waits for Dev's row; the PATCH commits, taking Ann's admin role; the
    deactivation then wrote with it. Serially the PATCH came first (the deactivation waited for it):
    Ann is a member, and a member may not deactivate anyone."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    admins = admins_group(db, system, acme.org.id, ann.id)
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    behind(db, _patch(acme.org.id, admins, system, removed=ann.id, added=dev.id),
           lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors,
           "Ann's deactivation of Dev")  # for Dev's row
    assert [type(error).__name__ for error in errors] == ["PermissionDenied"], errors
    assert _active(db, dev.id)


def _key_actor(db: Database, system: Actor, acme: NewOrg, user_id: str, team_id: str | None = None) -> Actor:
    """An admin-scoped key of `user_id` for `team_id` (the Default team), as the admin API sees it."""
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=user_id,
                                     team_id=team_id or acme.default_team_id, name="k", scopes=["admin"])
    with db.transaction() as session:
        return keys.verify_api_key(session, issued.secret).actor()


@RACE
def test_a_keys_write_that_waited_for_its_holders_demotion_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin, deactivates Dev with her admin key. The owner meanwhile makes Ann a member
    (users.change_role, holding the org's lock). The key's write waits for the org's lock and then
    wrote with the admin role the demotion took away: nothing confirmed a key's role."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    as_key = _key_actor(db, system, acme, ann.id)
    errors: list[BaseException] = []
    behind(db, lambda session: users.change_role(session, system, acme.org.id, ann.id, "member"),
           lambda: run(db, as_key, users.deactivate_user, acme.org.id, dev.id), errors,
           "the key's deactivation of Dev")  # for the org's lock
    assert [type(error).__name__ for error in errors] == ["PermissionDenied"], errors
    assert _active(db, dev.id)


@RACE
def test_a_keys_write_that_waited_for_its_holders_deactivation_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin, deactivates Dev with her admin key; the owner meanwhile deactivates Ann (her keys
    blocked, holding the org's lock). The key's write waited for it and wrote all the same."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    as_key = _key_actor(db, system, acme, ann.id)
    errors: list[BaseException] = []
    behind(db, lambda session: users.deactivate_user(session, system, acme.org.id, ann.id),
           lambda: run(db, as_key, users.deactivate_user, acme.org.id, dev.id), errors,
           "the key's deactivation of Dev")  # for the org's lock
    assert [type(error).__name__ for error in errors] == ["Unauthenticated"], errors
    assert _active(db, dev.id)


@RACE
def test_a_keys_write_that_waited_for_the_idp_revoking_the_key_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin by hand, is in team Eng through the IdP group Eng; her admin key is for Eng. With
    it she deactivates Dev: the org's lock (the key live then), then Dev's row. The IdP meanwhile
    PATCHes Eng: Ann out (her key for Eng revoked: she left the team), Dev in (Dev's row share-locked
    first). The deactivation waits for Dev's row and then wrote with the revoked key."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    with db.transaction() as session:
        eng = teams.create_team(session, system, acme.org.id, "Eng", creator=False).id
        group = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00gEng")
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gEng", team_id=eng)
        group_membership.add_members(session, system, acme.org.id, group.id, [ann.id])
    as_key = _key_actor(db, system, acme, ann.id, eng)
    errors: list[BaseException] = []
    behind(db, _patch(acme.org.id, group.id, system, removed=ann.id, added=dev.id),
           lambda: run(db, as_key, users.deactivate_user, acme.org.id, dev.id), errors,
           "the key's deactivation of Dev")  # for Dev's row
    with db.reading() as session:
        assert session.get_one(ApiKey, as_key.id).status == KeyStatus.REVOKED
    assert [type(error).__name__ for error in errors] == ["Unauthenticated"], errors
    assert _active(db, dev.id)


# The writes that lower their own caller's role, or end their own key: confirmed, not refused.


@pytest.mark.parametrize("through", ["session", "key"])
def test_an_owners_transfer_of_ownership_lowering_her_own_role_is_not_refused(
        db: Database, system: Actor, acme: NewOrg, through: str) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    owner = acme.owner
    actor = Actor("user", owner.id, owner.user_name, org_id=acme.org.id, role=Role.OWNER) if through == "session" \
        else _key_actor(db, system, acme, owner.id)
    run(db, actor, org_lifecycle.transfer_ownership, acme.org.id, bob.id)
    with db.reading() as session:
        assert (org_role(session, owner.id), org_role(session, bob.id)) == (Role.ADMIN, Role.OWNER)


def test_an_admins_rule_edit_lowering_her_own_role_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin through Admins, edits its rule to give member: her own role goes with it."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    admins_group(db, system, acme.org.id, ann.id)
    with db.reading() as session:
        rule = session.scalars(select(mappings.GroupMapping.id)).one()
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    run(db, as_ann, mappings.update_mapping, acme.org.id, rule, {"org_role": "member"})
    with db.reading() as session:
        assert org_role(session, ann.id) == Role.MEMBER


@pytest.mark.parametrize("how", ["revoke", "rotate"])
def test_a_key_that_revokes_or_rotates_itself_is_not_refused(
        db: Database, system: Actor, acme: NewOrg, how: str) -> None:
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, ann.id, "admin")
    as_key = _key_actor(db, system, acme, ann.id)
    if how == "revoke":
        run(db, as_key, keys.revoke_api_key, acme.org.id, as_key.id)
    else:
        run(db, as_key, keys.rotate_api_key, acme.org.id, as_key.id, grace_seconds=0)
    with db.reading() as session:
        key = session.get_one(ApiKey, as_key.id)
        assert key.status == KeyStatus.REVOKED if how == "revoke" else key.rotated_to is not None


def test_a_key_that_takes_its_holder_out_of_its_team_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann's admin key for the Default team takes her out of it: the key is revoked (she left its team)."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, ann.id, "admin")
    as_key = _key_actor(db, system, acme, ann.id)
    run(db, as_key, teams.remove_team_member, acme.org.id, acme.default_team_id, ann.id)
    with db.reading() as session:
        assert session.get_one(ApiKey, as_key.id).status == KeyStatus.REVOKED


def _session_actor(db: Database, user: User) -> Actor:
    """The actor of a live browser session of `user`, as the admin API sees it (its session named)."""
    with db.transaction() as session:
        token = create_session(session, user, method=SessionMethod.SAML, lifetime=Lifetime())
    with db.transaction() as session:
        actor = verify_session(session, token, Lifetime()).actor()
    assert actor.session_id is not None
    return actor


@pytest.mark.parametrize("through", ["session", "key"])
def test_a_write_is_confirmed_under_the_org_lock_and_at_its_end_in_one_statement_each(
        db: Database, system: Actor, acme: NewOrg, through: str) -> None:
    """What the confirmation costs (both backends): a session's caller's row with its org grants, or a
    key with its holder's (one join each), read right after the org's lock and again before the audit chain at commit.
    Against session 19: one statement more for a session's write that takes the org's lock (none for
    one that does not), two for a key's (one for one that does not). A real session's actor (session
    21): whether its session still exists, and until when (session 22), is read in the same statement
    (sessions._SESSION_ENDS)."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    actor = _session_actor(db, ann) if through == "session" else _key_actor(db, system, acme, ann.id)
    read = "SELECT users" if through == "session" else "SELECT api_keys"
    with statements(db) as sent:
        run(db, actor, users.deactivate_user, acme.org.id, dev.id)
    at_lock = sent.index("SELECT orgs") + 1
    assert sent[at_lock] == read, sent
    assert sent[-len(audit_at_commit(db)) - 1:] == [read, *audit_at_commit(db)], sent
