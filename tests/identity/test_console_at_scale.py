"""The console and the admin API's member list at scale: "no query that grows with org size on a hot path".

From a hostile scale review. Each test takes a hot path (the admin API's member list, the console
pages an owner opens daily) whose statements grew with the number of members, teams or keys of the
org, or a console page that stopped reaching everyone in a big org. Proofs are counts, not timings:
the statements a request sends at a small and at a large org (tests/statements.py). Each docstring
says what the code under review did.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from audit import Actor
from identity import directory, keys, teams
from identity.credential_models import ApiKey
from identity.db import Database
from identity.models import RoleGrant, Team, User
from identity.orgs import NewOrg
from tests.identity.test_api_sessions import sign_in
from tests.statements import statements

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SMALL, LARGE = 10, 200


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def admin_key(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """The owner's admin API key."""
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin", "inference"])
    return {"Authorization": f"Bearer {key.secret}"}


def seed_members(db: Database, org: NewOrg, count: int, *, start: int = 0) -> list[str]:
    """Bulk-insert `count` live members with an org role and the Default team (as provisioning leaves them)."""
    ids = [str(uuid.UUID(int=start + i + 1)) for i in range(count)]
    with db.begin() as conn:
        conn.execute(insert(User.__table__), [
            {"id": uid, "org_id": org.org.id, "user_name": f"m{start + i}@acme.test",
             "user_name_key": f"m{start + i}@acme.test", "email": f"m{start + i}@acme.test", "active": True,
             "has_seat": False, "source": "scim", "attributes": {}, "created_at": NOW, "updated_at": NOW, "version": 1}
            for i, uid in enumerate(ids)])
        conn.execute(insert(RoleGrant.__table__), [
            {"org_id": org.org.id, "user_id": uid, "team_id": team, "role": "member", "source": "scim",
             "source_ref": "", "created_at": NOW} for uid in ids for team in (None, org.default_team_id)])
    return ids


def seed_teams(db: Database, org: NewOrg, count: int, *, start: int = 0) -> list[str]:
    ids = [f"team-{start + i}" for i in range(count)]
    with db.begin() as conn:
        conn.execute(insert(Team.__table__), [
            {"id": tid, "org_id": org.org.id, "name": f"Team {tid}", "name_key": f"team {tid}", "created_at": NOW + dt.timedelta(seconds=i + 1),
             "is_default": False} for i, tid in enumerate(ids)])
    return ids


def seed_keys(db: Database, org: NewOrg, holders: list[str], *, start: int = 0) -> None:
    """One active personal key in the Default team for each of `holders`; their ids sort before any
    uuid4 (00000000-0000-0000-0000-...), so before the keys the services make."""
    with db.begin() as conn:
        conn.execute(insert(ApiKey.__table__), [
            {"id": str(uuid.UUID(int=start + i + 1)), "org_id": org.org.id, "team_id": org.default_team_id, "user_id": uid,
             "name": f"k{start + i}", "prefix": f"key_s{start + i:08d}", "secret_hash": "0" * 64,
             "scopes": ["inference"], "status": "active", "created_at": NOW} for i, uid in enumerate(holders)])


@dataclass
class Walk:
    """What following a console list's "Next" links showed: the rows' ids in order, each page's path and text."""

    seen: list[str]
    paths: list[str]
    texts: list[str]


def walk_next(client: FlaskClient, path: str, cookie: str, row: str, next_link: str) -> Walk:
    """GET `path`, then each page its `rel="next"` link (regex `next_link`, the href in group 1) leads to;
    collect the ids of the rows (regex `row`, the id in group 1)."""
    walk = Walk([], [], [])
    following: str | None = path
    while following is not None:
        page = client.get(following, headers={"Cookie": cookie})
        assert page.status_code == 200, following
        walk.seen += re.findall(row, page.text)
        walk.paths.append(following)
        walk.texts.append(page.text)
        found = re.search(next_link, page.text)
        following = html.unescape(found.group(1)) if found else None
    return walk


def count_sent(db: Database, client: FlaskClient, path: str, headers: dict[str, str]) -> list[str]:
    """The statements of a GET, after one unrecorded GET (a key's or session's last-used time is written
    at most once a minute: the counted request writes neither)."""
    client.get(path, headers=headers)
    with statements(db) as sent:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.data[:500]
    return list(sent)


# --- 1. the members list: two statements per member (admin API and console) ------------------------------------

def test_members_list_sends_the_same_statements_for_10_or_200_members(
        db: Database, acme: NewOrg, client: FlaskClient, admin_key: dict[str, str]) -> None:
    """GET /api/v1/orgs/<org>/members (and the console's members page, which calls the same
    identity.directory.list_members): Member.of reads each member's org role and team roles one
    member at a time, so a page of 200 members sends ~400 more statements than a page of 10."""
    seed_members(db, acme, SMALL)
    small = count_sent(db, client, "/api/v1/orgs/acme/members?limit=500", admin_key)
    seed_members(db, acme, LARGE - SMALL, start=SMALL)
    large = count_sent(db, client, "/api/v1/orgs/acme/members?limit=500", admin_key)
    assert len(large) == len(small), (len(small), len(large), large[-6:])


def test_console_members_page_sends_the_same_statements_for_10_or_200_members(
        db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """/console/members renders up to 500 members, each read with two statements of its own
    (identity.directory.list_members -> Member.of -> grants.org_role, grants.team_roles)."""
    owner = sign_in(db, acme.owner.id)
    seed_members(db, acme, SMALL)
    small = count_sent(db, client, "/console/members", {"Cookie": owner.cookie})
    seed_members(db, acme, LARGE - SMALL, start=SMALL)
    large = count_sent(db, client, "/console/members", {"Cookie": owner.cookie})
    assert len(large) == len(small), (len(small), len(large))


# --- 2. the teams page: one read transaction per team for its wallet slot ------------------------------------

def test_console_teams_page_sends_the_same_statements_for_10_or_200_teams(
        db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """/console/teams lists up to 500 teams; the template's team_wallet(team.id)
    (identity/web/console/wallet.py) opens a read transaction per team and runs spend.get_wallet
    (the team, the org, the wallet): a statement count that grows with the org's teams."""
    owner = sign_in(db, acme.owner.id)
    seed_teams(db, acme, SMALL)
    small = count_sent(db, client, "/console/teams", {"Cookie": owner.cookie})
    seed_teams(db, acme, LARGE - SMALL, start=SMALL)
    large = count_sent(db, client, "/console/teams", {"Cookie": owner.cookie})
    assert len(large) == len(small), (len(small), len(large))


# --- 4. the keys page: the holder's org role read once per key ------------------------------------------------

def test_console_keys_page_sends_the_same_statements_for_10_or_200_keys(
        db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """/console/keys (an owner sees every key, up to 500): key_actions asks keys.may_act_on_key for
    rotate and for revoke of each key, and each asks grants.org_role of the key's holder: two
    statements per key of someone else."""
    owner = sign_in(db, acme.owner.id)
    holders = seed_members(db, acme, LARGE)
    seed_keys(db, acme, holders[:SMALL])
    small = count_sent(db, client, "/console/keys", {"Cookie": owner.cookie})
    seed_keys(db, acme, holders[SMALL:], start=SMALL)
    large = count_sent(db, client, "/console/keys", {"Cookie": owner.cookie})
    assert len(large) == len(small), (len(small), len(large))


# --- pages that stop working for a big org ---------------------------------------------------------------------

def test_the_keys_page_shows_the_owner_their_own_key_in_an_org_of_500_keys(
        db: Database, acme: NewOrg, client: FlaskClient, system: Actor) -> None:
    """/console/keys reads the first 500 keys of the whole org by id (SHOWN, key_list.list_api_keys) and
    then picks "your keys" out of them in Python: in an org with more than 500 keys an owner's or
    admin's own key is missing from "Your keys" (and from the page altogether), with no note and
    no next page, so it cannot be rotated or revoked from the console."""
    with db.transaction() as session:
        mine = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                   name="my production key", scopes=["inference"])
    seed_keys(db, acme, seed_members(db, acme, 500))
    page = client.get("/console/keys", headers={"Cookie": sign_in(db, acme.owner.id).cookie})
    assert page.status_code == 200
    shown = f'id="key-{mine.id}"' in page.text
    assert shown, "the owner's own key is not on the keys page"


def test_the_team_page_lets_every_member_of_the_org_be_added(db: Database, acme: NewOrg, client: FlaskClient,
                                                              system: Actor) -> None:
    """/console/teams?team=<id>: the "Add a member" list was directory.list_members(limit=200) of the
    whole org, first 200 by user id: in an org of 300 members, a third of them could never be added to
    a team from the console (and the page read 2 statements per member for it: test 1). The form now
    takes the member's email or userName, which the domain resolves: every member can be named."""
    from identity import teams
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Platform")
    people = seed_members(db, acme, 300)
    owner = sign_in(db, acme.owner.id)
    page = client.get(f"/console/teams?team={team.id}", headers={"Cookie": owner.cookie})
    assert page.status_code == 200
    assert 'name="member" type="text"' in page.text and "<option value=\"" + people[0] not in page.text
    chosen = [0, 199, 200, 299]  # either side of where the list stopped, and the last
    for i in chosen:
        added = client.post(f"/console/teams/{team.id}/members", data={"csrf_token": owner.csrf,
                                                                       "member": f"m{i}@acme.test", "role": "member"},
                            headers=owner.headers())
        assert added.status_code == 303, (i, added.data[-500:])
    with db.reading() as session:
        detail = directory.get_team_detail(session, system, acme.org.id, team.id, limit=500)
    assert {m.user_id for m in detail.members} == {people[i] for i in chosen}


def test_the_members_page_reaches_every_member(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """/console/members showed the first 500 members by id (SHOWN) and, past them, only "the admin API
    lists them all": no next page, no search. In an org of 600 (DESIGN.md 1 speaks of 4,000
    employees) an owner could not change the role of, deactivate or remove member 501+ in the console.
    Following the page's "Next" links (and back by "Previous") now reaches every member."""
    people = seed_members(db, acme, 600)
    headers = {"Cookie": sign_in(db, acme.owner.id).cookie}
    walk = walk_next(client, "/console/members", headers["Cookie"], r'<tr id="member-([0-9a-f-]+)">',
                     r'<a href="(/console/members\?after=[^"]+)" rel="next">')
    seen, pages = walk.seen, walk.texts
    missing = [uid for uid in people if uid not in seen]
    assert not missing, f"{len(missing)} of {len(people)} members are on no console page"
    assert len(seen) == len(set(seen)) and 1 < len(pages) < len(people)
    back = re.search(r'<a href="(/console/members\?before=[^"]+)" rel="prev">', pages[-1])
    assert back, "the last page links to no previous one"
    previous = client.get(html.unescape(back.group(1)), headers=headers).text
    assert re.findall(r'<tr id="member-([0-9a-f-]+)">', previous) == re.findall(
        r'<tr id="member-([0-9a-f-]+)">', pages[-2])


def test_the_members_and_keys_pages_load_a_bounded_number_of_teams(db: Database, acme: NewOrg,
                                                                  client: FlaskClient) -> None:
    """/console/members and /console/keys call directory.list_teams without a window: every team of
    the org is loaded on each view (the members page only to name the teams of the 500 members it
    shows; the keys page renders each one as an <option> of the service-key form). With group_sync
    `mirror`, every IdP group is a team: 10,000 groups are 10,000 Team rows per page view."""
    from sqlalchemy import event
    owner = {"Cookie": sign_in(db, acme.owner.id).cookie}
    loaded: dict[str, int] = {}

    def count(path: str) -> int:
        seen = [0]

        def on_load(_target: Any, _context: Any) -> None:
            seen[0] += 1
        event.listen(Team, "load", on_load)
        try:
            assert client.get(path, headers=owner).status_code == 200
        finally:
            event.remove(Team, "load", on_load)
        return seen[0]

    seed_teams(db, acme, SMALL)
    for path in ("/console/members", "/console/keys"):
        loaded[f"{path} small"] = count(path)
    seed_teams(db, acme, LARGE - SMALL, start=SMALL)
    for path in ("/console/members", "/console/keys"):
        loaded[f"{path} large"] = count(path)
    assert loaded["/console/members large"] == loaded["/console/members small"], loaded
    assert loaded["/console/keys large"] == loaded["/console/keys small"], loaded


def test_the_keys_page_reaches_every_key_of_the_org(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """Every other key of the org is on some page of /console/keys, through its "Next" links."""
    holders = seed_members(db, acme, 250)
    seed_keys(db, acme, holders)
    walk = walk_next(client, "/console/keys", sign_in(db, acme.owner.id).cookie, r'<tr id="key-([0-9a-f-]+)">',
                     r'<a href="(/console/keys\?after=[^"]+)" rel="next">')
    assert sorted(walk.seen) == sorted(str(uuid.UUID(int=i + 1)) for i in range(250))
    assert 'rel="prev"' in walk.texts[-1]


def test_a_service_key_is_made_for_a_team_typed_by_name(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """The service-key form takes a team's name or id (no list of every team): a name it resolves, an
    unknown one is refused next to the field."""
    seed_teams(db, acme, 3)
    owner = sign_in(db, acme.owner.id)
    form = {"csrf_token": owner.csrf, "name": "prod", "scopes": "inference"}
    made = client.post("/console/keys/service", data={**form, "team_id": "team team-2"}, headers=owner.headers())
    assert made.status_code == 200 and "Service key prod is ready" in made.text
    with db.reading() as session:
        assert session.scalars(select(ApiKey.team_id).where(ApiKey.name == "prod")).one() == "team-2"
    refused = client.post("/console/keys/service", data={**form, "team_id": "Nope"}, headers=owner.headers())
    assert refused.status_code == 404 and 'id="service-team_id-error"' in refused.text


def test_the_teams_page_shows_a_count_past_its_cap_as_more(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """A team's count stops at directory's cap (member_count_exact false past it): the page says "100+"."""
    owner = sign_in(db, acme.owner.id)
    seed_members(db, acme, 120)
    page = client.get("/console/teams", headers={"Cookie": owner.cookie}).get_data(as_text=True)
    assert re.search(r'data-label="Members">100\+</td>', page), page


def test_an_expanded_team_pages_through_all_its_members(db: Database, acme: NewOrg, client: FlaskClient,
                                                        system: Actor) -> None:
    """/console/teams?team=<id> listed a team's first 200 members and, past them, only "the admin API
    lists them all": in a team of 450 an owner could not change the team role of, or remove, member
    201+ from the console. "Next" now reaches every member, and a change made on a later page
    comes back to that page."""
    people = seed_members(db, acme, 450)  # every one of them in the Default team, with the owner
    owner = sign_in(db, acme.owner.id)
    team = acme.default_team_id
    walk = walk_next(client, f"/console/teams?team={team}", owner.cookie, r'<tr id="member-([0-9a-f-]+)">',
                     r'<a href="(/console/teams\?team=[^"#]+members_after=[^"#]+)#[^"]*" rel="next">')
    seen, pages = walk.seen, walk.paths
    assert set(people) | {acme.owner.id} == set(seen) and len(seen) == len(set(seen))
    assert len(pages) == 3, pages
    last = people[-1]
    after = pages[-1].split("members_after=")[1]
    changed = client.post(f"/console/teams/{team}/members/{last}/role", headers=owner.headers(),
                          data={"csrf_token": owner.csrf, "role": "admin", "members_after": after})
    assert changed.status_code == 303 and pages[-1] in changed.headers["Location"], changed.headers.get("Location")
    with db.reading() as session:
        member = directory.get_team_member(session, system, acme.org.id, team, last)
    assert member.team_role == "admin"
    assert client.get(f"/console/teams?team={team}&members_after=x", headers={"Cookie": owner.cookie}).status_code == 400


def test_a_member_sees_their_own_team_past_the_first_page_of_teams(db: Database, acme: NewOrg, client: FlaskClient,
                                                                   system: Actor) -> None:
    """The teams page read one page of 500 teams and filtered a member's own teams out of it: with
    group_sync=mirror an IdP's groups make hundreds of teams, and the member of team 505 did not see
    it. A member's teams are now read by their grants."""
    ids = seed_teams(db, acme, 505)
    (bob,) = seed_members(db, acme, 1)
    with db.transaction() as session:
        teams.add_team_member(session, system, acme.org.id, ids[-1], bob, "member")
    page = client.get("/console/teams", headers={"Cookie": sign_in(db, bob).cookie}).text
    assert f'<tr id="team-{ids[-1]}">' in page and f'<tr id="team-{ids[0]}">' not in page


def test_the_teams_page_reaches_every_team(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """Past 500 teams there was no next link, and a later team could not be renamed, deleted or expanded
    from the console. "Next" now reaches every team, "Previous" goes back, and a rename made on a
    later page comes back to that page."""
    ids = seed_teams(db, acme, 505)
    owner = sign_in(db, acme.owner.id)
    walk = walk_next(client, "/console/teams", owner.cookie, r'<tr id="team-([^"]+)">',
                     r'<a href="(/console/teams\?after=[^"]+)" rel="next">')
    seen, pages, page_text = walk.seen, walk.paths, walk.texts[-1]
    assert sorted(seen) == sorted([*ids, acme.default_team_id]) and len(pages) == 2
    assert f'action="/console/teams/{ids[-1]}/rename"' in page_text
    back = re.search(r'<a href="(/console/teams\?before=[^"]+)" rel="prev">', page_text)
    assert back and f'<tr id="team-{ids[0]}">' in client.get(html.unescape(back.group(1)),
                                                                  headers={"Cookie": owner.cookie}).text
    after = html.unescape(pages[-1].split("after=")[1])
    renamed = client.post(f"/console/teams/{ids[-1]}/rename", headers=owner.headers(),
                          data={"csrf_token": owner.csrf, "name": "Renamed", "after": after})
    assert renamed.status_code == 303 and renamed.headers["Location"].startswith(pages[-1])


def _form_fields(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's form posting to `action` (what a browser sends with it)."""
    form = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.DOTALL)
    assert form, action
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(0)))


def test_a_key_acted_on_a_later_page_comes_back_to_that_page(db: Database, acme: NewOrg, client: FlaskClient,
                                                             system: Actor) -> None:
    """A key row's Rotate and Revoke forms carried no page position: a refusal (rotated meanwhile: 409)
    rendered page 1, where that key's error slot is not, so nothing was said; a revocation redirected
    to page 1. The forms now carry the page back."""
    seed_keys(db, acme, seed_members(db, acme, 105))
    owner = sign_in(db, acme.owner.id)
    first = client.get("/console/keys", headers={"Cookie": owner.cookie}).text
    following = re.search(r'<a href="(/console/keys\?after=[^"]+)" rel="next">', first)
    assert following
    second_path = html.unescape(following.group(1))
    second = client.get(second_path, headers={"Cookie": owner.cookie}).text
    key_id = re.findall(r'action="/console/keys/([0-9a-f-]{36})/rotate"', second)[0]
    with db.transaction() as session:  # another admin rotates it while this page is open
        keys.rotate_api_key(session, system, acme.org.id, key_id)
    rotate = _form_fields(second, f"/console/keys/{key_id}/rotate")
    refused = client.post(f"/console/keys/{key_id}/rotate", data=rotate, headers=owner.headers())
    assert refused.status_code == 409 and f'id="key-{key_id}-error"' in refused.text
    revoke = _form_fields(second, f"/console/keys/{key_id}/revoke")
    revoked = client.post(f"/console/keys/{key_id}/revoke", data=revoke, headers=owner.headers())
    assert revoked.status_code == 303 and revoked.headers["Location"] == f"{second_path}#key-{key_id}"


def test_each_keys_list_pages_without_moving_the_other(db: Database, acme: NewOrg, client: FlaskClient) -> None:
    """/console/keys pages "Your keys" and "Every key" apart: following one list's Next or Previous
    kept the list but sent the other back to its first page (its position dropped from the link)."""
    holders = seed_members(db, acme, 150)
    seed_keys(db, acme, holders)
    seed_keys(db, acme, [acme.owner.id] * 150, start=1000)  # the owner's own: two pages of "Your keys"
    cookie = sign_in(db, acme.owner.id).cookie
    first = client.get("/console/keys", headers={"Cookie": cookie}).get_data(as_text=True)
    mine_next = html.unescape(re.search(r'<a href="(/console/keys\?[^"]*mine_after=[^"]+)" rel="next">', first)[1])
    on_mine_2 = client.get(mine_next, headers={"Cookie": cookie}).get_data(as_text=True)
    others_next = re.search(r'<a href="(/console/keys\?(?:[^"]*&)?after=[^"]+)" rel="next">', html.unescape(on_mine_2))[1]
    assert "mine_after=" in others_next  # "Your keys" stays on its second page
    both_2 = client.get(others_next, headers={"Cookie": cookie}).get_data(as_text=True)
    back = html.unescape(re.search(r'<a href="(/console/keys\?[^"]*mine_before=[^"]+)" rel="prev">', both_2)[1])
    assert "after=" in back.replace("mine_", "")  # and "Every key" stays on its second page
