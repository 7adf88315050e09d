"""A member's team keys when an IdP group change takes the team away (DESIGN.md 3.3, 3.5, 3.7).

Removing a member from a team by hand revokes their keys for it (`left_team`, named by prefix in
the removal's event). The same happens, in the same transaction and through the same function
(identity.key_revocation.revoke_keys_of_teams_left), whichever way an IdP group change takes the team:
a SCIM PATCH or PUT of the group's members, the group deleted, a mapping rule changed or deleted,
a SAML sign-in's group claims, a switch of `group_sync`, the provisioned Default team giving way
to a group's team. The key's row says `revoked` (not `active` while the gateway refuses it), the
group change's event names it, and the audit log still explains the data (identity.reconcile).
Revoked is for good: the team coming back does not bring the key back (only deactivation's block
is undone, DESIGN 3.5).

At the end, the Default team itself (DESIGN 3.3): it comes back to a member when a group change
takes their last group team, and not to one an admin took out of it when a group change takes
no team from them (identity.group_defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor
from audit.models import AuditEvent
from identity import gateway, group_claims, group_membership, groups, keys, mappings, orgs, team_deletion, teams, users
from identity.db import Database
from identity.grants import team_roles
from identity.lookups import default_team_id
from identity.models import ApiKey, IdpGroup
from identity.orgs import NewOrg
from identity.reconcile import reconcile
from tests.factories import provision
from tests.scim.client import scim_for
from tests.statements import statements


@dataclass
class Lost:
    """One way of losing a team: the key held for it, the team kept, and the event that names the key."""

    key: keys.Issued
    kept: keys.Issued
    action: str


def _key(session: Session, system: Actor, org_id: str, user_id: str, team_id: str, name: str = "k") -> keys.Issued:
    return keys.create_api_key(session, system, org_id, user_id=user_id, team_id=team_id, name=name,
                               scopes=["inference"])


def _status(db: Database, key_id: str) -> tuple[str, str | None]:
    with db.reading() as session:
        key = session.get_one(ApiKey, key_id)
        return key.status, key.status_reason


def _last(db: Database, org_id: str, action: str) -> dict:
    with db.reading() as session:
        return session.scalars(select(AuditEvent.changes).where(
            AuditEvent.org_id == org_id, AuditEvent.action == action).order_by(AuditEvent.seq.desc()).limit(1)).one()


def _named(db: Database, org_id: str, prefix: str) -> list[str]:
    """The actions of the events whose `keys_revoked` names the key."""
    with db.reading() as session:
        return [action for action, changes in session.execute(select(AuditEvent.action, AuditEvent.changes).where(
            AuditEvent.org_id == org_id).order_by(AuditEvent.seq)) if prefix in (changes or {}).get("keys_revoked", [])]


def _reconciles(db: Database, org_id: str) -> None:
    with db.reading() as session:
        assert reconcile(session, org_id) == []


def _member_with_kept_team(db: Database, system: Actor, acme: NewOrg, source: str = "scim") -> tuple[str, str]:
    """A member the IdP provisioned, also in a team `Kept` by hand; return (user id, that team's id)."""
    dev = provision(db, system, acme.org.id, "dev@acme.test", source=source)
    with db.transaction() as session:
        kept = teams.create_team(session, system, acme.org.id, "Kept")
        teams.add_team_member(session, system, acme.org.id, kept.id, dev.id)
    return dev.id, kept.id


def _in_mirrored_group(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> tuple[str, str, Lost]:
    """Put dev in a mirrored group `Platform` and give dev a key for its team and one for `Kept`."""
    with db.transaction() as session:
        group = groups.create_group(session, system, org_id, display_name="Platform", external_id="obj-platform",
                                    member_ids=[dev])
        team = session.get_one(IdpGroup, group.id).team_id
        lost = Lost(_key(session, system, org_id, dev, team), _key(session, system, org_id, dev, kept), "")
    return group.id, team, lost


def _scim_patch_remove(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    group, _, lost = _in_mirrored_group(db, system, org_id, dev, kept)
    with db.transaction() as session:
        groups.change_group(session, system, org_id, group, groups.GroupChange(removed=(dev,)))
    return Lost(lost.key, lost.kept, "group.members_removed")


def _scim_put_members(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    group, _, lost = _in_mirrored_group(db, system, org_id, dev, kept)
    with db.transaction() as session:
        groups.change_group(session, system, org_id, group, groups.GroupChange(members=()))
    return Lost(lost.key, lost.kept, "group.members_removed")


def _group_deleted(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    group, _, lost = _in_mirrored_group(db, system, org_id, dev, kept)
    with db.transaction() as session:
        groups.delete_group(session, system, org_id, group)
    return Lost(lost.key, lost.kept, "group.members_removed")


def _rule_changed(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    with db.transaction() as session:
        backend = teams.create_team(session, system, org_id, "Backend")
        frontend = teams.create_team(session, system, org_id, "Frontend")
        rule = mappings.create_mapping(session, system, org_id, group_external_id="obj-eng", team_id=backend.id)
        groups.create_group(session, system, org_id, display_name="Eng", external_id="obj-eng", member_ids=[dev])
        lost = Lost(_key(session, system, org_id, dev, backend.id), _key(session, system, org_id, dev, kept), "")
    with db.transaction() as session:
        mappings.update_mapping(session, system, org_id, rule.id, {"team_id": frontend.id})
    return Lost(lost.key, lost.kept, "group.members_added")


def _rule_deleted(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    with db.transaction() as session:
        backend = teams.create_team(session, system, org_id, "Backend")
        rule = mappings.create_mapping(session, system, org_id, group_external_id="obj-eng", team_id=backend.id)
        groups.create_group(session, system, org_id, display_name="Eng", external_id="obj-eng", member_ids=[dev])
        lost = Lost(_key(session, system, org_id, dev, backend.id), _key(session, system, org_id, dev, kept), "")
    with db.transaction() as session:
        mappings.delete_mapping(session, system, org_id, rule.id)  # mirrored now: the team `Eng`, not Backend
    return Lost(lost.key, lost.kept, "group.members_added")


def _saml_claims(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, org_id, dev, ["Platform"])
        team = session.scalars(select(IdpGroup.team_id).where(IdpGroup.org_id == org_id,
                                                              IdpGroup.display_name == "Platform")).one()
        lost = Lost(_key(session, system, org_id, dev, team), _key(session, system, org_id, dev, kept), "")
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, org_id, dev, [])  # the next assertion names no group
    return Lost(lost.key, lost.kept, "group.members_removed")


def _group_sync_switched(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    _in_group, _, lost = _in_mirrored_group(db, system, org_id, dev, kept)
    with db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"group_sync": "mapped"})
    return Lost(lost.key, lost.kept, "group.grants_rederived")


def _default_gives_way(db: Database, system: Actor, org_id: str, dev: str, kept: str) -> Lost:
    with db.transaction() as session:
        default = default_team_id(session, org_id)
        lost = Lost(_key(session, system, org_id, dev, default), _key(session, system, org_id, dev, kept), "")
    with db.transaction() as session:  # a group's team: the provisioned Default team gives way (group_defaults)
        groups.create_group(session, system, org_id, display_name="Platform", member_ids=[dev])
    return Lost(lost.key, lost.kept, "group.members_added")


WAYS: dict[str, Callable[[Database, Actor, str, str, str], Lost]] = {
    "scim_patch_remove": _scim_patch_remove, "scim_put_members": _scim_put_members, "group_deleted": _group_deleted,
    "rule_changed": _rule_changed, "rule_deleted": _rule_deleted, "saml_claims": _saml_claims,
    "group_sync_switched": _group_sync_switched, "default_gives_way": _default_gives_way,
}


@pytest.mark.parametrize("way", WAYS)
def test_a_team_lost_through_the_idp_revokes_the_members_keys_for_it(db: Database, system: Actor, acme: NewOrg,
                                                                   way: str) -> None:
    """As a removal by hand does: revoked (`left_team`), named by the change's event; the key for
    the team the member keeps stays active; the log explains it all."""
    dev, kept = _member_with_kept_team(db, system, acme, source="saml" if way == "saml_claims" else "scim")
    lost = WAYS[way](db, system, acme.org.id, dev, kept)
    assert _status(db, lost.key.id) == ("revoked", "left_team")
    assert _status(db, lost.kept.id) == ("active", None)
    assert _named(db, acme.org.id, lost.key.prefix) == [lost.action]
    _reconciles(db, acme.org.id)


def test_a_deactivated_members_blocked_key_is_revoked_and_reactivation_leaves_it_so(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """DESIGN 3.5: reactivation unblocks only what deactivation blocked; a key of a team left while
    deactivated was revoked for another reason, and stays revoked."""
    dev, kept = _member_with_kept_team(db, system, acme)
    group, _, lost = _in_mirrored_group(db, system, acme.org.id, dev, kept)
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, dev)
    assert _status(db, lost.key.id) == ("blocked", "deactivation")
    with db.transaction() as session:
        group_membership.remove_members(session, system, acme.org.id, group, [dev])
    assert _status(db, lost.key.id) == ("revoked", "left_team")
    with db.transaction() as session:
        users.reactivate_user(session, system, acme.org.id, dev)
    assert _status(db, lost.key.id) == ("revoked", "left_team")
    assert _status(db, lost.kept.id) == ("active", None)
    assert _last(db, acme.org.id, "user.reactivated")["keys_unblocked"] == [lost.kept.prefix]
    _reconciles(db, acme.org.id)


def test_the_team_coming_back_does_not_bring_the_key_back(db: Database, system: Actor, acme: NewOrg) -> None:
    """Revoked for good, as after a removal by hand: the member makes a new key once back."""
    dev, kept = _member_with_kept_team(db, system, acme)
    group, team, lost = _in_mirrored_group(db, system, acme.org.id, dev, kept)
    with db.transaction() as session:
        group_membership.remove_members(session, system, acme.org.id, group, [dev])
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, group, [dev])
    with db.reading() as session:
        assert team in team_roles(session, dev)
    assert _status(db, lost.key.id) == ("revoked", "left_team")
    _reconciles(db, acme.org.id)


def test_a_member_still_in_the_team_another_way_keeps_the_key(db: Database, system: Actor, acme: NewOrg) -> None:
    dev, kept = _member_with_kept_team(db, system, acme)
    group, team, lost = _in_mirrored_group(db, system, acme.org.id, dev, kept)
    with db.transaction() as session:
        teams.add_team_member(session, system, acme.org.id, team, dev)  # by hand too
        group_membership.remove_members(session, system, acme.org.id, group, [dev])
    assert _status(db, lost.key.id) == ("active", None)
    assert _last(db, acme.org.id, "group.members_removed")["keys_revoked"] == []
    _reconciles(db, acme.org.id)


def test_a_team_deleted_still_revokes_its_keys_as_team_deleted(db: Database, system: Actor, acme: NewOrg) -> None:
    """Deleting a team deletes the rules into it first (their groups re-derived): its keys are the
    deletion's to revoke, `team_deleted`, not the re-derivation's."""
    dev, kept = _member_with_kept_team(db, system, acme)
    with db.transaction() as session:
        backend = teams.create_team(session, system, acme.org.id, "Backend")
        mappings.create_mapping(session, system, acme.org.id, group_external_id="obj-eng", team_id=backend.id)
        groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="obj-eng", member_ids=[dev])
        key = _key(session, system, acme.org.id, dev, backend.id)
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, backend.id)
    assert _status(db, key.id) == ("revoked", "team_deleted")
    assert _named(db, acme.org.id, key.prefix) == ["team.deleted"]
    _reconciles(db, acme.org.id)


def _members_with_keys(db: Database, system: Actor, org_id: str, count: int, name: str) -> tuple[str, list[str]]:
    with db.transaction() as session:
        ids = [users.provision_user(session, system, org_id, user_name=f"{name}{i}@acme.test", source="scim").id
               for i in range(count)]
        group = groups.create_group(session, system, org_id, display_name=name, member_ids=ids)
        team = session.get_one(IdpGroup, group.id).team_id
        for user_id in ids:
            _key(session, system, org_id, user_id, team)
    return group.id, ids


def test_removing_many_members_revokes_their_keys_in_the_same_statements_as_few(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Set-based: the statements of a group change do not grow with the members it removes."""
    sent = {}
    for count, name in ((3, "small"), (60, "large")):
        group, ids = _members_with_keys(db, system, acme.org.id, count, name)
        with statements(db) as sent[count], db.transaction() as session:
            group_membership.remove_members(session, system, acme.org.id, group, ids)
        assert len(_last(db, acme.org.id, "group.members_removed")["keys_revoked"]) == count
    assert sent[3] == sent[60]
    assert sent[60].count("UPDATE api_keys") == 1
    _reconciles(db, acme.org.id)


def test_scim_patch_then_the_gateway_and_the_key_list_agree(db: Database, system: Actor, client: FlaskClient) -> None:
    """Over HTTP: the IdP's PATCH takes the member out of the group; the gateway's check and the
    key's row both say revoked."""
    scim = scim_for(db, client, system, "Globex")
    dev = scim.create_user("dev@globex.test")["id"]
    group = scim.create_group("Platform", [dev])["id"]
    with db.transaction() as session:
        team = session.get_one(IdpGroup, group).team_id
        key = _key(session, system, scim.org_id, dev, team)
        credential = gateway.create_credential(session, system)
    check = {"json": {"key": key.secret}, "headers": {"Authorization": f"Bearer {credential.secret}"}}
    assert client.post("/api/v1/keys/verify", **check).get_json()["valid"] is True
    response = scim.patch(f"/Groups/{group}", [{"op": "remove", "path": f'members[value eq "{dev}"]'}])
    assert response.status_code == 204, response.json
    assert client.post("/api/v1/keys/verify", **check).get_json() == {"valid": False, "reason": "revoked"}
    assert _status(db, key.id) == ("revoked", "left_team")
    _reconciles(db, scim.org_id)


def test_a_member_taken_out_of_default_by_hand_stays_out_through_the_next_group_change(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """DESIGN 3.3: the Default team is where a member goes whom no group maps anywhere; it gives way
    to a group's team and comes back when the member loses their last one. An admin's removal from
    Default is no group's doing: a later group change that takes no team from the member (here a
    group that gives an org role only) leaves it as the admin made it."""
    dev = provision(db, system, acme.org.id, "dev@acme.test", source="scim")
    with db.transaction() as session:
        mappings.create_mapping(session, system, acme.org.id, group_display_name="Auditors", org_role="viewer")
        teams.remove_team_member(session, system, acme.org.id, acme.default_team_id, dev.id)
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Auditors", member_ids=[dev.id])
    with db.reading() as session:
        assert team_roles(session, dev.id) == {}
        assert users.org_role(session, dev.id) == "viewer"
    with db.transaction() as session:
        group_membership.remove_members(session, system, acme.org.id, group.id, [dev.id])
    with db.reading() as session:
        assert team_roles(session, dev.id) == {}
        assert users.org_role(session, dev.id) == "member"  # the org's default role: no group gives one
    _reconciles(db, acme.org.id)



def _lose_by_removal(db: Database, system: Actor, org_id: str, group: str, team: str) -> None:
    with db.transaction() as session:
        group_membership.remove_members(session, system, org_id, group, group_membership.member_ids(session, group))


def _lose_by_rule(db: Database, system: Actor, org_id: str, group: str, team: str) -> None:
    with db.transaction() as session:  # the group's rule now gives an org role only: reapply
        mappings.create_mapping(session, system, org_id, group_display_name="Platform", org_role="member")


def _lose_by_group_sync(db: Database, system: Actor, org_id: str, group: str, team: str) -> None:
    with db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"group_sync": "mapped"})


def _lose_by_team_deletion(db: Database, system: Actor, org_id: str, group: str, team: str) -> None:
    with db.transaction() as session:
        team_deletion.delete_team(session, system, org_id, team)


@pytest.mark.parametrize("lose", [_lose_by_removal, _lose_by_rule, _lose_by_group_sync, _lose_by_team_deletion],
                         ids=["removed", "rule", "group_sync", "team_deleted"])
def test_a_member_losing_their_last_group_team_rejoins_default_even_if_once_taken_out_by_hand(
        db: Database, system: Actor, acme: NewOrg, lose: Callable[..., None]) -> None:
    """The IdP's change that leaves the member mapped nowhere puts them in Default (DESIGN 3.3),
    whichever change it is."""
    dev = provision(db, system, acme.org.id, "dev@acme.test", source="scim")
    with db.transaction() as session:
        teams.remove_team_member(session, system, acme.org.id, acme.default_team_id, dev.id)
        group = groups.create_group(session, system, acme.org.id, display_name="Platform", member_ids=[dev.id])
        team = session.get_one(IdpGroup, group.id).team_id
    with db.reading() as session:
        assert team_roles(session, dev.id) == {team: "member"}
    lose(db, system, acme.org.id, group.id, team)
    with db.reading() as session:
        assert team_roles(session, dev.id) == {acme.default_team_id: "member"}
    _reconciles(db, acme.org.id)
