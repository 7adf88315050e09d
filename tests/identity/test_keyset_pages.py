"""The reads the console pages by: keys and members in keyset pages both ways, your keys apart from
the others', team names for a page's rows, and a member or team named as a person types it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import directory, key_list, keys, members, teams
from identity.db import Database
from identity.errors import InvalidValue, NotFound
from identity.orgs import NewOrg


def owner(org: NewOrg) -> Actor:
    return Actor(type="user", id=org.owner.id, display="owner", org_id=org.org.id, role="owner")


def _people(db: Database, system: Actor, org: NewOrg, count: int) -> list[str]:
    with db.transaction() as session:
        return [members.add_member(session, system, org.org.id, email=f"p{i}@acme.test", role="member",
                                   team_id=None).id for i in range(count)]


def test_member_pages_go_forward_and_back_over_every_member(db: Database, system: Actor, acme: NewOrg) -> None:
    _people(db, system, acme, 6)
    pages, after = [], ""
    with db.reading() as session:
        while True:
            page = directory.list_members(session, owner(acme), acme.org.id, limit=3, after=after)
            pages.append(page)
            if page.next is None:
                break
            after = page.next
        everyone = [m.id for p in pages for m in p.members]
        assert len(everyone) == 7 and everyone == sorted(everyone)  # the owner and six
        assert pages[0].previous is None and pages[1].previous == pages[1].members[0].id
        back = directory.list_members(session, owner(acme), acme.org.id, limit=3, before=pages[2].members[0].id)
        assert [m.id for m in back.members] == [m.id for m in pages[1].members]
        assert back.next == pages[1].members[-1].id and back.previous == pages[1].members[0].id
        first = directory.list_members(session, owner(acme), acme.org.id, limit=3, before=pages[1].members[0].id)
        assert [m.id for m in first.members] == [m.id for m in pages[0].members] and first.previous is None


def test_your_keys_and_the_others_are_listed_apart_and_paged_both_ways(db: Database, system: Actor,
                                                                      acme: NewOrg) -> None:
    people = _people(db, system, acme, 4)
    with db.transaction() as session:
        mine = {keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                    name="mine", scopes=["inference"]).id for _ in range(2)}
        theirs = {keys.create_api_key(session, system, acme.org.id, user_id=uid, team_id=acme.default_team_id,
                                      name="theirs", scopes=["inference"]).id for uid in people}
        theirs.add(keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="svc",
                                           scopes=["inference"]).id)
    with db.reading() as session:
        own = key_list.list_api_keys(session, owner(acme), acme.org.id, limit=10, whose="mine")
        assert {e.key.id for e in own.entries} == mine
        first = key_list.list_api_keys(session, owner(acme), acme.org.id, limit=3, whose="others")
        assert first.next is not None and first.previous is None
        second = key_list.list_api_keys(session, owner(acme), acme.org.id, limit=3, whose="others", after=first.next)
        assert {e.key.id for e in first.entries + second.entries} == theirs and second.previous is not None
        back = key_list.list_api_keys(session, owner(acme), acme.org.id, limit=3, whose="others", before=second.previous)
        assert [e.key.id for e in back.entries] == [e.key.id for e in first.entries]
        with pytest.raises(InvalidValue):
            key_list.list_api_keys(session, owner(acme), acme.org.id, limit=3, whose="everyone")
        member = Actor(type="user", id=people[0], display="p0", org_id=acme.org.id, role="member")
        assert len(key_list.list_api_keys(session, member, acme.org.id, limit=10, whose="others").entries) == 0


def test_a_pages_key_actions_ask_the_one_rule_with_the_holders_roles_read_once(db: Database, system: Actor,
                                                                             acme: NewOrg) -> None:
    admin = _people(db, system, acme, 1)[0]
    with db.transaction() as session:
        members.change_member(session, system, acme.org.id, admin, role="admin", active=None)
        owners_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                         team_id=acme.default_team_id, name="o", scopes=["inference"]).id
    as_admin = Actor(type="user", id=admin, display="admin", org_id=acme.org.id, role="admin")
    with db.reading() as session:
        page = key_list.list_api_keys(session, as_admin, acme.org.id, limit=10, whose="others")
        roles = key_list.holder_roles(session, page.entries)
        assert roles == {acme.owner.id: "owner"}
        (entry,) = [e for e in page.entries if e.key.id == owners_key]
        for rotate in (False, True):  # an admin may not act on an owner's key, read once or per key
            assert keys.may_act_on_key(session, as_admin, acme.org.id, entry.key, rotate=rotate,
                                       holder_roles=roles) is False
            assert keys.may_act_on_key(session, as_admin, acme.org.id, entry.key, rotate=rotate) is False
        assert keys.may_act_on_key(session, owner(acme), acme.org.id, entry.key, holder_roles={}) is True


def test_teams_are_found_by_id_or_name_and_named_for_a_pages_rows(db: Database, system: Actor, acme: NewOrg) -> None:
    with db.transaction() as session:
        ops = teams.create_team(session, system, acme.org.id, "Ops")
    with db.reading() as session:
        assert directory.find_team(session, owner(acme), acme.org.id, ops.id).id == ops.id
        assert directory.find_team(session, owner(acme), acme.org.id, " ops ").id == ops.id
        with pytest.raises(NotFound):
            directory.find_team(session, owner(acme), acme.org.id, "nobody's team")
        assert directory.team_names(session, owner(acme), acme.org.id, [ops.id, ops.id, "gone"]) == {ops.id: "Ops"}
        assert directory.team_names(session, owner(acme), acme.org.id, []) == {}


def test_a_member_is_added_to_a_team_by_email_or_user_name(db: Database, system: Actor, acme: NewOrg) -> None:
    person = _people(db, system, acme, 1)[0]
    with db.transaction() as session:
        ops = teams.create_team(session, system, acme.org.id, "Ops")
        added = teams.add_team_member_by_address(session, owner(acme), acme.org.id, ops.id, "P0@acme.test", "admin")
        assert added.id == person
        for typed in ("", "nobody@acme.test"):
            with pytest.raises(NotFound) as refused:
                teams.add_team_member_by_address(session, owner(acme), acme.org.id, ops.id, typed)
            assert refused.value.context["field"] == "member"
    with db.reading() as session:
        assert "team.member_added" in list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.target_id == person)))
        assert directory.get_team_member(session, owner(acme), acme.org.id, ops.id, person).team_role == "admin"
