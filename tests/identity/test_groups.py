"""IdP groups become teams and roles (DESIGN.md 3.3); leaving a group takes back exactly its grants."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import group_claims, group_membership, groups, mappings, orgs, users
from identity.db import Database
from identity.models import GroupMapping, IdpGroup, Org, RoleGrant, Team
from identity.orgs import NewOrg
from tests.factories import actions, provision


def _mapping(db: Database, org_id: str, **rule) -> None:
    import uuid

    from audit import clock

    with db.transaction() as session:
        session.add(GroupMapping(id=str(uuid.uuid4()), org_id=org_id, created_at=clock.now(), **rule))


def test_mirror_mode_makes_a_team_per_group_and_rename_keeps_it(db: Database, acme: NewOrg, system: Actor) -> None:
    alice = provision(db, system, acme.org.id, "alice@acme.test")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Engineering",
                                    external_id="entra-obj-1", member_ids=[alice.id])
    with db.reading() as session:
        team_id = session.get(type(group), group.id).team_id
        assert session.get(Team, team_id).name == "Engineering"
        assert users.team_roles(session, alice.id)[team_id] == "member"
    with db.transaction() as session:
        groups.update_group(session, system, acme.org.id, group.id, display_name="Platform Engineering")
    with db.reading() as session:
        assert session.get(type(group), group.id).team_id == team_id
        assert session.get(Team, team_id).name == "Platform Engineering"
    assert "group.members_added" in actions(db, acme.org.id)


def test_rule_by_external_id_beats_display_name_and_grants_roles(db: Database, acme: NewOrg, system: Actor) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        from identity import teams

        admins_team = teams.create_team(session, system, acme.org.id, "Admins")
    _mapping(db, acme.org.id, group_external_id="obj-admins", team_id=admins_team.id, team_role="admin", org_role="admin")
    _mapping(db, acme.org.id, group_display_name="IT Admins", org_role="viewer")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="IT Admins", external_id="obj-admins",
                                    member_ids=[bob.id])
    with db.reading() as session:
        assert users.org_role(session, bob.id) == "admin"
        assert users.team_roles(session, bob.id)[admins_team.id] == "admin"
    with db.transaction() as session:
        group_membership.remove_members(session, system, acme.org.id, group.id, [bob.id])
    with db.reading() as session:
        assert users.org_role(session, bob.id) == "member"       # back to what provisioning gave
        assert admins_team.id not in users.team_roles(session, bob.id)


@pytest.mark.parametrize(("rule_name", "group_name"), [("équipe paris", "Équipe Paris"), ("Åsa's team", "åSA'S TEAM")])
def test_names_outside_ascii_compare_as_keys_on_every_database(db: Database, acme: NewOrg, system: Actor,
                                                               rule_name: str, group_name: str) -> None:
    """A rule by display name matches the group whatever the case of its non-ASCII letters, and a
    second group of that name is a 409, on SQLite as on PostgreSQL (identity.names.name_key)."""
    from identity.errors import Conflict

    bob = provision(db, system, acme.org.id, "bob@acme.test")
    _mapping(db, acme.org.id, group_display_name=rule_name, org_role="admin")
    with db.transaction() as session:
        groups.create_group(session, system, acme.org.id, display_name=group_name, member_ids=[bob.id])
    with db.reading() as session:
        assert users.org_role(session, bob.id) == "admin"
    with db.transaction() as session, pytest.raises(Conflict):
        groups.create_group(session, system, acme.org.id, display_name=rule_name)


def test_owner_from_idp_only_when_the_org_allows_it(db: Database, acme: NewOrg, system: Actor) -> None:
    carol = provision(db, system, acme.org.id, "carol@acme.test")
    _mapping(db, acme.org.id, group_display_name="Founders", org_role="owner")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Founders", member_ids=[carol.id])
    with db.reading() as session:
        assert users.org_role(session, carol.id) == "admin"
    with db.transaction() as session:
        session.get(Org, acme.org.id).idp_may_grant_owner = True
        group_membership.remove_members(session, system, acme.org.id, group.id, [carol.id])
        group_membership.add_members(session, system, acme.org.id, group.id, [carol.id])
    with db.reading() as session:
        assert users.org_role(session, carol.id) == "owner"


def test_mapped_mode_ignores_groups_without_rules(db: Database, acme: NewOrg, system: Actor) -> None:
    dave = provision(db, system, acme.org.id, "dave@acme.test")
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"group_sync": "mapped"})
        groups.create_group(session, system, acme.org.id, display_name="Random", member_ids=[dave.id])
    with db.reading() as session:
        assert [t.name for t in session.scalars(select(Team).where(Team.org_id == acme.org.id))] == ["Default"]


def test_removing_absent_members_is_no_error_and_unknown_users_are_refused(db: Database, acme: NewOrg,
                                                                         system: Actor) -> None:
    from identity.errors import InvalidValue

    erin = provision(db, system, acme.org.id, "erin@acme.test")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Sales")
        assert group_membership.remove_members(session, system, acme.org.id, group.id, [erin.id, "nobody"]) == []
    with pytest.raises(InvalidValue), db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, group.id, [erin.id, "not-a-user"])
    with db.reading() as session:
        assert group_membership.member_ids(session, group.id) == []


def test_group_removal_never_takes_the_last_owner(db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        session.get(Org, acme.org.id).idp_may_grant_owner = True
    _mapping(db, acme.org.id, group_display_name="Owners", org_role="owner")
    frank = provision(db, system, acme.org.id, "frank@acme.test")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Owners", member_ids=[frank.id])
        users.delete_user(session, system, acme.org.id, acme.owner.id)  # frank is now the only owner
    with db.transaction() as session:
        assert group_membership.remove_members(session, system, acme.org.id, group.id, [frank.id]) == []
    with db.reading() as session:
        assert users.org_role(session, frank.id) == "owner"
    assert actions(db, acme.org.id)[-1] == "member.last_owner_protected"


def test_saml_group_claims_set_the_users_groups(db: Database, acme: NewOrg, system: Actor) -> None:
    gina = provision(db, system, acme.org.id, "gina@acme.test")
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, acme.org.id, gina.id, ["Design", "Research"])
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, acme.org.id, gina.id, ["design"])
    with db.reading() as session:
        names = {session.get(Team, t).name for t in users.team_roles(session, gina.id)}
    assert names == {"Default", "Design"}


def test_each_group_grant_remembers_whether_scim_or_a_saml_claim_gave_it(db: Database, acme: NewOrg,
                                                                           system: Actor) -> None:
    """DESIGN 3.2: a grant's source is its channel. One group, one member pushed by SCIM, one named by
    a SAML claim; a new rule re-grants each from its own source; the events say which."""
    scim_user = provision(db, system, acme.org.id, "sam@acme.test")
    saml_user = provision(db, system, acme.org.id, "sara@acme.test")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Ops", external_id="00gOps",
                                    member_ids=[scim_user.id])
        group_claims.apply_user_groups(session, system, acme.org.id, saml_user.id, ["00gOps"])
    with db.transaction() as session:
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gOps", org_role="admin")
    with db.reading() as session:
        sources = {(g.user_id, g.team_id is None): g.source for g in session.scalars(
            select(RoleGrant).where(RoleGrant.source_ref == group.id))}
        added = [e.changes["source"] for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "group.members_added", AuditEvent.target_id == group.id).order_by(AuditEvent.seq))]
    assert sources == {(scim_user.id, True): "scim", (saml_user.id, True): "saml"}
    assert added == ["scim", "saml", "saml", "scim"]  # added twice each: again when the rule re-granted


def test_saml_group_claim_names_a_group_by_its_immutable_id_before_another_groups_name(
        db: Database, acme: NewOrg, system: Actor) -> None:
    gina = provision(db, system, acme.org.id, "gina@acme.test")
    with db.transaction() as session:
        engineering = groups.create_group(session, system, acme.org.id, display_name="Engineering", external_id="00gA")
        groups.create_group(session, system, acme.org.id, display_name="00ga")  # a name equal to that id
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, acme.org.id, gina.id, ["00gA"])
    with db.reading() as session:
        assert group_membership.member_ids(session, engineering.id) == [gina.id]
        assert len(list(session.scalars(select(IdpGroup.id).where(IdpGroup.org_id == acme.org.id)))) == 2


def test_mapping_rules_via_api_apply_at_once_and_on_delete(client, db: Database, acme: NewOrg, system: Actor) -> None:
    from identity import keys, teams

    hana = provision(db, system, acme.org.id, "hana@acme.test")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="SREs", external_id="obj-sre",
                                    member_ids=[hana.id])
        oncall = teams.create_team(session, system, acme.org.id, "On-call")
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["admin"])
    auth = {"Authorization": f"Bearer {key.secret}"}
    made = client.post("/api/v1/orgs/acme/group-mappings", headers=auth, json={
        "group_external_id": "obj-sre", "team_id": oncall.id, "team_role": "admin", "org_role": "admin"})
    assert made.status_code == 201, made.json
    with db.reading() as session:
        assert users.org_role(session, hana.id) == "admin"
        assert users.team_roles(session, hana.id)[oncall.id] == "admin"
        mirror = session.get(type(group), group.id).team_id
    assert client.get("/api/v1/orgs/acme/group-mappings", headers=auth).json["group_mappings"][0]["team_id"] == oncall.id
    assert client.delete(f"/api/v1/orgs/acme/group-mappings/{made.json['id']}", headers=auth).status_code == 204
    with db.reading() as session:
        assert users.org_role(session, hana.id) == "member"
        assert set(users.team_roles(session, hana.id)) == {acme.default_team_id, mirror}
    bad = client.post("/api/v1/orgs/acme/group-mappings", headers=auth, json={"group_display_name": "X"})
    assert bad.status_code == 400


def test_change_group_renames_first_then_replaces_removes_and_adds_members(db: Database, acme: NewOrg,
                                                                           system: Actor) -> None:
    ann, ben, cy = (provision(db, system, acme.org.id, f"{n}@acme.test") for n in ("ann", "ben", "cy"))
    _mapping(db, acme.org.id, group_display_name="Admins", org_role="admin")
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"group_sync": "mapped"})
        group = groups.create_group(session, system, acme.org.id, display_name="Staff", member_ids=[ann.id])
    before = len(actions(db, acme.org.id))
    change = groups.GroupChange(display_name="Admins", external_id="obj-1", attributes={"x-note": "n"},
                                members=(ann.id, ben.id), removed=(ann.id,), added=(cy.id,))
    with db.transaction() as session:
        groups.change_group(session, system, acme.org.id, group.id, change)
    with db.reading() as session:
        assert sorted(group_membership.member_ids(session, group.id)) == sorted([ben.id, cy.id])
        # Renamed before the members were added: they get what the group's new name maps to, and so
        # did its member before them (re-derived at the rename: the second event) until removed.
        assert users.org_role(session, ben.id) == users.org_role(session, cy.id) == "admin"
        assert users.org_role(session, ann.id) == "member"
        assert session.get(IdpGroup, group.id).external_id == "obj-1"
    assert actions(db, acme.org.id)[before:] == ["group.updated", "group.members_added", "group.members_added",
                                                 "group.members_removed", "group.members_added"]
    with db.transaction() as session:
        groups.change_group(session, system, acme.org.id, group.id, groups.GroupChange(clear_external_id=True))
    with db.reading() as session:
        assert session.get(IdpGroup, group.id).external_id is None
        assert session.get(IdpGroup, group.id).display_name == "Admins"


def test_the_rule_of_the_groups_own_immutable_id_beats_another_groups_rule_of_the_same_name(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """DESIGN 3.3: the immutable id first, the display name only as a fallback. A stale rule for
    another group id (Entra: a group deleted and made again under the same name) never matches by
    name; a name-only rule ranks before it for a group without an id. The stale rule is made first,
    so that the database's row order (SQLite: insertion order) would put it first."""
    from identity import teams

    ivy, jon = (provision(db, system, acme.org.id, f"{n}@acme.test") for n in ("ivy", "jon"))
    with db.transaction() as session:
        stale, current, named = (teams.create_team(session, system, acme.org.id, name).id
                                 for name in ("Old Engineers", "Platform", "Named"))
        mappings.create_mapping(session, system, acme.org.id, group_external_id="obj-deleted",
                                group_display_name="Engineers", team_id=stale, org_role="admin")
        mappings.create_mapping(session, system, acme.org.id, group_external_id="obj-new", team_id=current)
        mappings.create_mapping(session, system, acme.org.id, group_display_name="Engineers (Okta)", team_id=named)
        mappings.create_mapping(session, system, acme.org.id, group_external_id="obj-other",
                                group_display_name="Engineers (Okta)", team_id=stale, org_role="admin")
        groups.create_group(session, system, acme.org.id, display_name="Engineers", external_id="obj-new",
                            member_ids=[ivy.id])
        groups.create_group(session, system, acme.org.id, display_name="Engineers (Okta)", member_ids=[jon.id])
    with db.reading() as session:
        ivy_teams, jon_teams = users.team_roles(session, ivy.id), users.team_roles(session, jon.id)
        assert (current in ivy_teams, stale in ivy_teams, users.org_role(session, ivy.id)) == (True, False, "member")
        assert (named in jon_teams, stale in jon_teams, users.org_role(session, jon.id)) == (True, False, "member")


def test_switching_group_sync_re_derives_what_every_group_without_a_rule_gives(db: Database, acme: NewOrg,
                                                                               system: Actor) -> None:
    """DESIGN 3.3: under `mapped` only groups with a rule change teams and roles; under `mirror` every
    group without one is a team. Switching re-derives the members already in such groups (not only
    those added later), one group.grants_rederived event each; a group with a rule is left alone."""
    early, late, ruled = (provision(db, system, acme.org.id, f"{n}@acme.test") for n in ("early", "late", "ruled"))
    with db.transaction() as session:
        sales = groups.create_group(session, system, acme.org.id, display_name="Sales", member_ids=[early.id])
        mappings.create_mapping(session, system, acme.org.id, group_display_name="Admins", org_role="admin")
        groups.create_group(session, system, acme.org.id, display_name="Admins", member_ids=[ruled.id])
        mirror = session.get_one(IdpGroup, sales.id).team_id
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"group_sync": "mapped"})
        group_membership.add_members(session, system, acme.org.id, sales.id, [late.id])
    with db.reading() as session:
        assert mirror not in users.team_roles(session, early.id) and mirror not in users.team_roles(session, late.id)
        assert users.org_role(session, ruled.id) == "admin"
    assert actions(db, acme.org.id)[-3:] == ["org.settings_changed", "group.grants_rederived", "group.members_added"]
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"group_sync": "mirror"})
    with db.reading() as session:
        assert users.team_roles(session, early.id)[mirror] == users.team_roles(session, late.id)[mirror] == "member"
        assert users.org_role(session, ruled.id) == "admin"


def test_a_group_rule_granting_viewer_makes_its_members_viewers(db: Database, acme: NewOrg, system: Actor) -> None:
    """DESIGN 3.3: only "a user whom no group maps anywhere gets the org's default role" (hostile review,
    40067eb). Provisioning stores the default role (`member`) as a SCIM grant and the highest grant wins,
    so a rule mapping a group to `viewer` (an IdP may grant viewer, DESIGN 3.2) must take the provisioned
    grant away while the group gives a role, or the contractors it names keep `member` and may make keys."""
    contractor = provision(db, system, acme.org.id, "contractor@acme.test", source="scim")
    with db.transaction() as session:
        mappings.create_mapping(session, system, acme.org.id, group_external_id="contractors", org_role="viewer")
        group = groups.create_group(session, system, acme.org.id, display_name="Contractors",
                                    external_id="contractors", member_ids=[contractor.id])
    with db.reading() as session:
        assert users.org_role(session, contractor.id) == "viewer"
    with db.transaction() as session:
        group_membership.remove_members(session, system, acme.org.id, group.id, [contractor.id])
    with db.reading() as session:
        assert users.org_role(session, contractor.id) == "member"  # no group maps them: the default again
        grants = {(g.team_id, g.source, g.source_ref) for g in session.scalars(
            select(RoleGrant).where(RoleGrant.user_id == contractor.id))}
    assert grants == {(None, "scim", ""), (acme.default_team_id, "scim", "")}


def test_the_default_team_and_role_give_way_to_groups_and_come_back_with_the_orgs_current_default(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """DESIGN 3.3: a member a group puts in a team is not in the Default team by provisioning; when
    its last group grant goes, it rejoins Default and gets the org's default role as it is then,
    from the source that provisioned it. Manual grants stay whatever the groups do; a rule edited
    or deleted (mappings -> reapply) settles the defaults too."""
    saml_user = provision(db, system, acme.org.id, "sso@acme.test", source="saml")
    by_hand = provision(db, system, acme.org.id, "hand@acme.test")
    with db.transaction() as session:
        rule = mappings.create_mapping(session, system, acme.org.id, group_display_name="Auditors", org_role="viewer")
        group = groups.create_group(session, system, acme.org.id, display_name="Auditors",
                                    member_ids=[saml_user.id, by_hand.id])
    with db.reading() as session:
        assert users.org_role(session, saml_user.id) == "viewer"
        assert users.org_role(session, by_hand.id) == "member"  # its manual grant is never touched
        assert acme.default_team_id in users.team_roles(session, saml_user.id)  # no group gives it a team
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"default_role": "admin"})
        mappings.update_mapping(session, system, acme.org.id, rule.id, {"org_role": None, "team_id": acme.default_team_id})
    with db.reading() as session:
        assert users.org_role(session, saml_user.id) == "admin"  # no group gives a role: today's default
        assert users.team_roles(session, saml_user.id) == {acme.default_team_id: "member"}
        assert {(g.team_id, g.source, g.source_ref) for g in session.scalars(select(RoleGrant).where(
            RoleGrant.user_id == saml_user.id))} == {(None, "saml", ""), (acme.default_team_id, "scim", group.id)}
    with db.transaction() as session:
        groups.delete_group(session, system, acme.org.id, group.id)
    with db.reading() as session:
        assert {(g.team_id, g.source, g.source_ref) for g in session.scalars(select(RoleGrant).where(
            RoleGrant.user_id == saml_user.id))} == {(None, "saml", ""), (acme.default_team_id, "saml", "")}


def test_a_member_whose_mirrored_team_is_deleted_rejoins_the_default_team(db: Database, acme: NewOrg,
                                                                          system: Actor) -> None:
    """DESIGN 3.3: a member in a mirrored group's team is not in Default; once that team is deleted no
    group gives the member a team, and it is back in Default, as SCIM provisioned it."""
    from identity import team_deletion

    seller = provision(db, system, acme.org.id, "seller@acme.test", source="scim")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Sales", member_ids=[seller.id])
        mirror = session.get_one(IdpGroup, group.id).team_id
    with db.reading() as session:
        assert users.team_roles(session, seller.id) == {mirror: "member"}
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, mirror)
    with db.reading() as session:
        assert users.team_roles(session, seller.id) == {acme.default_team_id: "member"}
        assert users.org_role(session, seller.id) == "member"
