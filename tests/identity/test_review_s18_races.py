"""Hostile review (session 18) of concurrency outside wallets and IdP group membership: keys, teams,
org roles, org deletion (PostgreSQL, real concurrent transactions under READ COMMITTED).

Each test holds one transaction open at a chosen point (the test's own, or a thread queued behind a
lock it holds), lets the other commit, and asserts the rule after both: no serial order of the two
gives what the code leaves. Each failed on the code it was written against.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import (
    gateway,
    groups,
    invitations,
    keys,
    mappings,
    org_lifecycle,
    outbox,
    team_deletion,
    teams,
    users,
)
from identity.db import Database
from identity.errors import Conflict, NotFound, Unauthenticated
from identity.gateway import Refusal
from identity.grants import org_role
from identity.models import ApiKey, GroupMapping, Invitation, RoleGrant, User
from identity.orgs import NewOrg
from identity.vocabulary import InvitationStatus, KeyStatus
from tests.factories import behind, in_thread, provision, wait_for_a_lock_wait

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _team_with(db: Database, system: Actor, acme: NewOrg, member: User, name: str = "Research") -> str:
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, name, creator=False)
        teams.add_team_member(session, system, acme.org.id, team.id, member.id)
        return team.id


def _finish(thread: threading.Thread, what: str) -> None:
    thread.join(30)
    assert not thread.is_alive(), f"{what} never finished"


def _status(db: Database, key_id: str) -> KeyStatus:
    with db.reading() as session:
        return session.get_one(ApiKey, key_id).status


def _works_once_back(db: Database, system: Actor, acme: NewOrg, team_id: str, member: User,
                     issued: keys.Issued) -> bool:
    """Put `member` back in the team; tell whether the key `issued` then passes the key check."""
    with db.transaction() as session:
        teams.add_team_member(session, system, acme.org.id, team_id, member.id)
    try:
        with db.transaction() as session:
            keys.verify_api_key(session, issued.secret)
    except Unauthenticated:
        return False
    return True


def test_a_key_made_while_its_holder_is_taken_out_of_the_team_is_revoked_with_the_others(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """An admin makes Dev a key for Research while another takes Dev out of Research. The key's
    creation reads Dev's grant in the team (still there) and writes the key; the removal deletes the
    grant and revokes Dev's Research keys, which do not include the one not yet committed, and commits
    first (nothing the creation holds is in its way). Both commit: an active key for a team its holder
    left, which `teams.remove_team_member` promises revoked, and which works again the day Dev is put
    back in Research (README: revoked for good). Serially: removal first refuses the key (not a member);
    creation first has it revoked."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    errors: list[BaseException] = []
    with db.transaction() as session:  # the key written, its transaction not committed yet
        issued = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=team_id, name="k",
                                     scopes=["inference"])
        session.flush()

        def remove() -> None:
            with db.transaction() as other:
                teams.remove_team_member(other, system, acme.org.id, team_id, dev.id)
        remover = in_thread(remove, errors)
        wait_for_a_lock_wait(db, "the removal from the team")  # for Dev's grant in the team, once fixed
    _finish(remover, "the removal from the team")
    assert errors == []
    status = _status(db, issued.id)
    assert (status, _works_once_back(db, system, acme, team_id, dev, issued)) == (KeyStatus.REVOKED, False), \
        f"a key survives its holder leaving its team ({status}), and works again once they are back"


def test_a_rotation_while_the_holder_is_taken_out_of_the_team_leaves_no_successor_active(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Dev rotates their Research key (the old key's row locked) while an admin takes Dev out of
    Research. The removal deletes Dev's grant, lists the keys to revoke (the old one: the successor
    is not committed) and waits for the old key's row; the rotation commits; the removal revokes the
    old key only and commits. The successor stays active for a team its holder left, and works again
    when Dev is put back. Serially: removal first refuses the rotation (the key is revoked); rotation
    first has both revoked."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    with db.transaction() as session:
        old = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=team_id, name="k",
                                  scopes=["inference"])
    dev_self = Actor("user", dev.id, "dev", org_id=acme.org.id, role="member")
    errors: list[BaseException] = []
    with db.transaction() as session:  # the rotation holds the old key's row, not committed yet
        successor = keys.rotate_api_key(session, dev_self, acme.org.id, old.id)
        session.flush()

        def remove() -> None:
            with db.transaction() as other:
                teams.remove_team_member(other, system, acme.org.id, team_id, dev.id)
        remover = in_thread(remove, errors)
        wait_for_a_lock_wait(db, "the removal from the team")  # for the old key's row
    _finish(remover, "the removal from the team")
    assert errors == []
    assert _status(db, old.id) == KeyStatus.REVOKED
    status = _status(db, successor.id)
    assert (status, _works_once_back(db, system, acme, team_id, dev, successor)) == (KeyStatus.REVOKED, False), \
        f"the rotated key's successor survives its holder leaving ({status}), and works again once they are back"


@pytest.mark.parametrize(("change", "expected"), [("delete_user", KeyStatus.REVOKED),
                                                   ("deactivate_user", KeyStatus.BLOCKED)])
def test_a_key_made_during_its_holders_deletion_or_deactivation_does_not_stay_active(
        db: Database, system: Actor, acme: NewOrg, change: str, expected: KeyStatus) -> None:
    """The deletion (or deactivation) of Dev holds the org's lock and Dev's row (FOR NO KEY UPDATE),
    revokes (blocks) Dev's keys and is not committed yet. A key made for Dev meanwhile takes no lock
    but the foreign key's KEY SHARE on Dev's row, which does not conflict: it reads Dev live and active,
    writes an active key and commits. After both, a deleted (deactivated) member holds an active key,
    which DESIGN 3.5 says their removal revokes (blocks). Serially the key is refused, or revoked."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    made: list[keys.Issued] = []
    errors: list[BaseException] = []

    def make() -> None:
        with db.transaction() as other:
            made.append(keys.create_api_key(other, system, acme.org.id, user_id=dev.id,
                                            team_id=acme.default_team_id, name="k", scopes=["inference"]))
    with db.transaction() as session:  # the removal done, not committed yet
        getattr(users, change)(session, system, acme.org.id, dev.id)
        session.flush()
        maker = in_thread(make, errors)
        wait_for_a_lock_wait(db, "the key's creation")  # for the org's lock, once fixed
    _finish(maker, "the key's creation")
    if errors:  # refused: the member was read as removed
        assert isinstance(errors[0], (NotFound, keys.PermissionDenied)), errors
        return
    assert _status(db, made[0].id) == expected, f"a key made during {change} stays active"


@pytest.mark.parametrize("late", ["add_team_member", "create_api_key", "create_mapping", "invite", "accept",
                                  "rename_team"])
def test_a_change_naming_a_team_whose_deletion_commits_meanwhile_is_not_found_not_a_500(
        db: Database, system: Actor, acme: NewOrg, late: str) -> None:
    """The deletion of Research has deleted the team's row, not committed. Adding a member to it (or
    making a member's key for it) reads the team (still there for it), inserts its row, and the foreign
    key's check waits for the deleted row; the deletion commits; the insert fails on the foreign key:
    IntegrityError, which identity.service.run re-raises (not a unique clash) and the API answers 500.
    So too a group mapping into the team, an invitation to it, and the acceptance of an invitation to it
    (whose grant in the team is inserted before the invitation's own compare-and-swap would have said
    "expired meanwhile"). The rule (no 500, a precise 4xx): the team is gone, NotFound (404), or for
    the acceptance the invitation expired meanwhile (InvalidValue). Renaming the team waits for the
    deleted row and finds no row to write: StaleDataError, a 500 too."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    token = ""
    if late == "accept":
        with db.transaction() as session:
            token = invitations.invite(session, system, acme.org.id, email="new@acme.test", team_id=team_id)[1]
    errors: list[BaseException] = []

    def act() -> None:
        with db.transaction() as other:
            if late == "add_team_member":
                teams.add_team_member(other, system, acme.org.id, team_id, acme.owner.id)
            elif late == "create_api_key":
                keys.create_api_key(other, system, acme.org.id, user_id=dev.id, team_id=team_id, name="k",
                                    scopes=["inference"])
            elif late == "create_mapping":
                mappings.create_mapping(other, system, acme.org.id, group_display_name="Researchers",
                                        team_id=team_id)
            elif late == "invite":
                invitations.invite(other, system, acme.org.id, email="new@acme.test", team_id=team_id)
            elif late == "rename_team":
                teams.rename_team(other, system, acme.org.id, team_id, "Research 2")
            else:
                invitations.accept(other, invitations.invitee(other, token), token)
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team_id)
        thread = in_thread(act, errors)
        wait_for_a_lock_wait(db, late)  # the foreign key's check, for the deleted team's row
    _finish(thread, late)
    assert [type(error).__name__ for error in errors] == ["InvalidValue" if late == "accept" else "NotFound"], errors


def test_an_invitation_sent_to_a_team_during_its_deletion_does_not_stay_pending(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """An admin invites new@ to Research while Research is being deleted. The invitation is written,
    not committed; the deletion expires the team's pending invitations (not this one: it cannot see
    it), and waits to delete the team's row for the invitation's foreign key; the invitation commits;
    the deletion sets its team NULL and commits. A pending invitation outlives its team (delete_team:
    "its pending invitations expire"), its mail goes out, and accepting it makes a member (of Default)
    that nobody invited there. Serially: the deletion first refuses the invitation (NotFound); the
    invitation first is expired by the deletion."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as other:
            team_deletion.delete_team(other, system, acme.org.id, team_id)
    with db.transaction() as session:
        invitation = invitations.invite(session, system, acme.org.id, email="new@acme.test", team_id=team_id)[0]
        session.flush()
        thread = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the team's deletion")  # to delete the team's row, for the invitation's key share
    _finish(thread, "the team's deletion")
    assert errors == []
    with db.reading() as session:
        status = session.get_one(Invitation, invitation.id).status
    assert status == InvitationStatus.EXPIRED, f"an invitation to a deleted team is {status}"


def test_a_role_change_that_waited_for_the_members_deletion_gives_no_role_to_the_removed(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """An owner makes Dev an admin while Dev's deletion is under way. `users.change_role` reads Dev
    (get_user: live) before the org's lock and waits for it; the deletion removes Dev's grants and
    commits; the role change counts nothing against that, writes an org-wide admin grant for the
    tombstone and audits `member.role_changed` after `user.deleted`. Serially: the change first is
    undone by the deletion; the deletion first makes the change NotFound."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    errors: list[BaseException] = []

    def promote() -> None:
        with db.transaction() as other:
            users.change_role(other, system, acme.org.id, dev.id, "admin")
    with db.transaction() as session:
        users.delete_user(session, system, acme.org.id, dev.id)
        thread = in_thread(promote, errors)
        wait_for_a_lock_wait(db, "the role change")  # for the org's lock
    _finish(thread, "the role change")
    with db.reading() as session:
        grants = list(session.scalars(select(RoleGrant.role).where(RoleGrant.user_id == dev.id)))
        events = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == dev.id)
                                      .order_by(AuditEvent.seq)))
    assert grants == [], f"a deleted member holds grants {grants}"
    assert events[-1] == "user.deleted", events
    assert [type(error).__name__ for error in errors] == ["NotFound"], errors


def test_a_team_membership_added_during_the_members_deletion_does_not_outlive_it(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Dev's deletion holds the org's lock and Dev's row (FOR NO KEY UPDATE) and has removed Dev's grants,
    not committed. Adding Dev to Research takes no lock but the foreign key's KEY SHARE on Dev's row
    (no conflict): it reads Dev live, writes the grant and commits. After both, a deleted member is a
    member of Research (its members count, team.deleted's `members_removed`) and `team.member_added`
    follows `user.deleted`."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
    errors: list[BaseException] = []

    def add() -> None:
        with db.transaction() as other:
            teams.add_team_member(other, system, acme.org.id, team_id, dev.id)
    behind(db, lambda session: users.delete_user(session, system, acme.org.id, dev.id),
            add, errors, "the add to the team")
    with db.reading() as session:
        grants = list(session.scalars(select(RoleGrant.team_id).where(RoleGrant.user_id == dev.id)))
    assert grants == [] and (errors == [] or isinstance(errors[0], NotFound)), (grants, errors)


def test_a_service_key_made_during_the_orgs_deletion_is_not_valid_at_the_gateway(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The org's deletion holds the org's row (FOR NO KEY UPDATE), has revoked every key it found and set
    `deleted_at`, not committed. A team service key made meanwhile takes no lock but the foreign keys'
    KEY SHARE (no conflict), reads the team, writes an active key and commits. After both, a deleted org
    has an active service key, and the gateway's key check (which asks neither the org's `deleted_at`
    nor a member for a service key) answers it valid: inference billed to a deleted org's team."""
    with db.transaction() as session:
        credential = gateway.create_credential(session, system)
    errors: list[BaseException] = []
    made: list[keys.Issued] = []

    def make() -> None:
        with db.transaction() as other:
            made.append(keys.create_service_key(other, system, acme.org.id, team_id=acme.default_team_id,
                                                name="svc", scopes=["inference"]))
    # for the org's lock, once fixed
    behind(db, lambda session: org_lifecycle.delete_org(session, system, acme.org.id, confirm=acme.org.slug),
            make, errors, "the service key's creation")
    if errors:
        assert isinstance(errors[0], NotFound), errors
        return
    with db.engine.connect() as conn:
        answer = gateway.check_key(conn, credential.secret, made[0].secret)
    status = _status(db, made[0].id)
    assert (status, answer.reason) == (KeyStatus.REVOKED, Refusal.REVOKED), \
        f"a deleted org's service key is {status}, and the gateway answers {answer}"


def test_two_adds_of_one_member_to_a_team_at_once_make_one_grant_and_later_changes_still_work(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Two admins add Dev to Research at once (a double click, two tabs). Each looks for Dev's manual
    grant in the team (none), inserts one and audits `team.member_added`; no lock and no unique key
    orders them, so both commit. Dev then holds two manual grants in Research, and every later
    `_set_manual_grant` on them (`scalars(...).one_or_none()`) raises MultipleResultsFound: changing
    Dev's team role, or adding Dev again, is a 500 from then on. Serially the second is a no-op."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
    errors: list[BaseException] = []

    def add() -> None:
        with db.transaction() as other:
            teams.add_team_member(other, system, acme.org.id, team_id, dev.id)
    behind(db, lambda session: teams.add_team_member(session, system, acme.org.id, team_id, dev.id),
            add, errors, "the second add")
    with db.reading() as session:
        grants = list(session.scalars(select(RoleGrant.id).where(RoleGrant.user_id == dev.id,
                                                                 RoleGrant.team_id == team_id)))
        added = list(session.scalars(select(AuditEvent.id).where(AuditEvent.action == "team.member_added",
                                                                 AuditEvent.target_id == dev.id)))
    assert errors == [] or isinstance(errors[0], Conflict), errors
    changed: list[BaseException] = []
    try:
        with db.transaction() as session:
            teams.change_team_role(session, system, acme.org.id, team_id, dev.id, "admin")
    except Exception as error:  # noqa: BLE001 - what it raised is the finding
        changed.append(error)
    assert (len(grants), len(added), changed) == (1, 1, []), (grants, added, changed)


def test_a_team_role_change_that_waited_for_the_members_removal_from_the_team_is_not_found_not_a_500(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Dev's removal from Research has deleted Dev's grants there, not committed. Changing Dev's team
    role reads Dev's grant (still there for it) and updates it, which waits for the deleted row; the
    removal commits; the UPDATE matches no row and the ORM raises StaleDataError: a 500. The rule: Dev
    is not in the team, NotFound (404), as `change_team_role` answers otherwise."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    errors: list[BaseException] = []

    def change() -> None:
        with db.transaction() as other:
            teams.change_team_role(other, system, acme.org.id, team_id, dev.id, "admin")
    with db.transaction() as session:
        teams.remove_team_member(session, system, acme.org.id, team_id, dev.id)
        thread = in_thread(change, errors)
        wait_for_a_lock_wait(db, "the team role change")  # for Dev's deleted grant
    _finish(thread, "the team role change")
    assert [type(error).__name__ for error in errors] == ["NotFound"], errors


def test_a_service_key_rotated_during_the_orgs_deletion_leaves_no_valid_successor(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A team service key is rotated (its row locked, the successor written) while the org is deleted:
    the deletion lists the org's keys still usable (the old one: the successor is not committed),
    revokes them and waits for the old key's row; the rotation commits; the deletion revokes the old key
    and commits. The successor stays active in a deleted org, and the gateway answers it valid."""
    with db.transaction() as session:
        credential = gateway.create_credential(session, system)
        old = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="svc",
                                      scopes=["inference"])
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as other:
            org_lifecycle.delete_org(other, system, acme.org.id, confirm=acme.org.slug)
    with db.transaction() as session:
        successor = keys.rotate_api_key(session, system, acme.org.id, old.id)
        session.flush()
        thread = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the org's deletion")  # for the old key's row
    _finish(thread, "the org's deletion")
    assert errors == []
    with db.engine.connect() as conn:
        answer = gateway.check_key(conn, credential.secret, successor.secret)
    status = _status(db, successor.id)
    assert (status, answer.reason) == (KeyStatus.REVOKED, Refusal.REVOKED), \
        f"a deleted org's rotated service key is {status}, and the gateway answers {answer.reason or 'valid'}"


@pytest.mark.parametrize("first", ["revoke_api_key", "remove_team_member"])
def test_a_key_revoked_twice_at_once_is_recorded_revoked_once(
        db: Database, system: Actor, acme: NewOrg, first: str) -> None:
    """Dev's key is being revoked (by hand, or by Dev's removal from its team: the row updated, not
    committed) when an admin revokes it by hand. `keys.revoke_api_key` reads the key (active, for it),
    records `api_key.revoked` "active -> revoked" and writes, which waits for the first; the first
    commits; the write goes through and commits too. The audit log says the key was revoked twice, the
    second time from active, and (after a removal) its reason is overwritten from `left_team` to
    `manual`. Serially the second finds the key revoked and records nothing."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id = _team_with(db, system, acme, dev)
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=team_id, name="k",
                                     scopes=["inference"])
    errors: list[BaseException] = []

    def revoke() -> None:
        with db.transaction() as other:
            keys.revoke_api_key(other, system, acme.org.id, issued.id)
    with db.transaction() as session:
        if first == "revoke_api_key":
            keys.revoke_api_key(session, system, acme.org.id, issued.id)
        else:
            teams.remove_team_member(session, system, acme.org.id, team_id, dev.id)
        session.flush()
        thread = in_thread(revoke, errors)
        wait_for_a_lock_wait(db, "the second revocation")  # for the key's row
    _finish(thread, "the second revocation")
    assert errors == []
    with db.reading() as session:
        events = list(session.execute(select(AuditEvent.action, AuditEvent.changes).where(
            AuditEvent.org_id == acme.org.id, AuditEvent.action.in_(["api_key.revoked", "team.member_removed"]))))
    revocations = [action for action, changes in events
                   if action == "api_key.revoked" or issued.prefix in changes.get("keys_revoked", [])]
    assert len(revocations) == 1, f"the key's revocation is recorded {len(revocations)} times: {events}"


def _mapped_group(db: Database, system: Actor, acme: NewOrg, member: User) -> tuple[str, str]:
    """A team Research and an IdP group Eng with `member`, mapped to Research and the org role admin:
    (the mapping's id, the group's id)."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research", creator=False)
        group = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00gEng",
                                    member_ids=[member.id])
        rule = mappings.create_mapping(session, system, acme.org.id, group_external_id="00gEng", team_id=team.id,
                                       team_role="member", org_role="admin")
        return rule.id, group.id


def _group_org_roles(db: Database, user_id: str, group_id: str) -> list[str]:
    with db.reading() as session:
        return sorted(session.scalars(select(RoleGrant.role).where(
            RoleGrant.user_id == user_id, RoleGrant.source_ref == group_id, RoleGrant.team_id.is_(None))))


def test_a_mapping_edit_that_waited_for_another_re_derives_from_the_rule_as_committed(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """An owner takes the org role admin out of the Eng mapping (its row updated, its group re-derived:
    Dev is no admin; not committed) while an admin changes the same mapping's team role. The admin's
    `mappings.update_mapping` has read the rule (org role admin) and waits to write its team role; the
    owner's commits; the admin's writes only its column and re-derives the group from its session's copy
    of the rule, still granting admin: Dev is an admin again, by a rule that says no org role. The
    owner's removal is undone without a word (its audit event stands), and the admin's event says the
    rule's team role changed, nothing of the org role it put back in force."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    rule_id, group_id = _mapped_group(db, system, acme, dev)
    assert _group_org_roles(db, dev.id, group_id) == ["admin"]
    errors: list[BaseException] = []

    def edit() -> None:
        with db.transaction() as other:
            mappings.update_mapping(other, system, acme.org.id, rule_id, {"team_role": "viewer"})
    with db.transaction() as session:
        mappings.update_mapping(session, system, acme.org.id, rule_id, {"org_role": None})
        thread = in_thread(edit, errors)
        wait_for_a_lock_wait(db, "the second edit")  # for the mapping's row
    _finish(thread, "the second edit")
    assert errors == []
    with db.reading() as session:
        rule = session.get_one(GroupMapping, rule_id)
        assert (rule.org_role, rule.team_role) == (None, "viewer")
    assert _group_org_roles(db, dev.id, group_id) == [], "the group grants an org role its rule no longer names"


def test_a_mapping_edit_that_waited_for_its_deletion_is_not_found_not_a_500(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The Eng mapping's deletion has deleted its row and re-derived its group, not committed. An edit of
    it read the rule (still there for it) and waits to write; the deletion commits; the UPDATE matches no
    row: StaleDataError, a 500. The rule: NotFound (404), as an edit of a mapping already gone answers."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    rule_id, _ = _mapped_group(db, system, acme, dev)
    errors: list[BaseException] = []

    def edit() -> None:
        with db.transaction() as other:
            mappings.update_mapping(other, system, acme.org.id, rule_id, {"team_role": "viewer"})
    with db.transaction() as session:
        mappings.delete_mapping(session, system, acme.org.id, rule_id)
        thread = in_thread(edit, errors)
        wait_for_a_lock_wait(db, "the edit")  # for the mapping's deleted row
    _finish(thread, "the edit")
    assert [type(error).__name__ for error in errors] == ["NotFound"], errors


def test_an_invitation_sent_during_the_orgs_deletion_is_not_left_pending_with_its_mail_queued(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The org's deletion holds the org's row (FOR NO KEY UPDATE) and has expired every pending
    invitation it found (their mails cancelled), not committed. An invitation sent meanwhile takes no
    lock but the foreign keys' KEY SHARE (no conflict): it reads the org live, writes a pending
    invitation and its mail and commits. After both, a deleted org has a pending invitation whose
    mail the outbox still delivers (identity.invitations.expire: "no mail of it may go out after" the
    org's deletion). Serially: the deletion first refuses the invitation; the invitation first is
    expired with its mail cancelled."""
    errors: list[BaseException] = []
    sent: list[str] = []

    def invite() -> None:
        with db.transaction() as other:
            sent.append(invitations.invite(other, system, acme.org.id, email="new@acme.test")[0].id)
    behind(db, lambda session: org_lifecycle.delete_org(session, system, acme.org.id, confirm=acme.org.slug),
            invite, errors, "the invitation")
    if errors:
        assert isinstance(errors[0], NotFound), errors
        return
    with db.reading() as session:
        status = session.get_one(Invitation, sent[0]).status
        mail = outbox.undelivered_for(session, sent[0])
    assert (status, mail) == (InvitationStatus.EXPIRED, None), \
        f"a deleted org's invitation is {status}, its mail {mail} still to be delivered"


def test_ownership_is_not_transferred_to_a_member_deactivated_while_the_transfer_waited(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The org has two owners. An owner deactivates Nina (the org's lock held, not committed) while the
    other owner transfers ownership to her: `org_lifecycle.transfer_ownership` checks that Nina is active
    (she is, for it) before it takes the org's lock, waits, and then makes her an owner without looking
    again; the second owner keeps the org from having none, so nothing refuses it. After both, a
    deactivated member is an owner and the one who handed over is an admin, against "the new owner must
    be an active member" (DESIGN 3.2). Serially the transfer is refused."""
    provision(db, system, acme.org.id, "second@acme.test", role="owner")
    nina = provision(db, system, acme.org.id, "nina@acme.test")
    owner = Actor("user", acme.owner.id, "owner", org_id=acme.org.id, role="owner")
    errors: list[BaseException] = []

    def transfer() -> None:
        with db.transaction() as other:
            org_lifecycle.transfer_ownership(other, owner, acme.org.id, nina.id)
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, nina.id)
        thread = in_thread(transfer, errors)
        wait_for_a_lock_wait(db, "the transfer")  # for the org's lock
    _finish(thread, "the transfer")
    with db.reading() as session:
        nina_role = org_role(session, nina.id)
        handed_over = org_role(session, acme.owner.id)
    assert (nina_role, handed_over) == ("member", "owner"), \
        f"a deactivated member is {nina_role} and the owner who handed over {handed_over}"
    assert [type(error).__name__ for error in errors] == ["InvalidValue"], errors
