"""Two findings of a review of the twelfth session's changes, each a test that failed before its fix:
a team members page's `after` that is a Unicode digit ("²") was a 500; adding a member to a team by
address could add another member whose (editable, not unique) email it was."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import directory, keys, teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import provision
from tests.identity.test_api_sessions import sign_in


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client(use_cookies=False)


@pytest.fixture
def admin_key(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.mark.parametrize("after", ["\u00b2", "\u2460", "1\u00b9"])
def test_team_members_page_after_that_is_a_unicode_digit_is_a_400_not_a_500(
        client: FlaskClient, acme: NewOrg, admin_key: dict[str, str], after: str) -> None:
    """directory._grant_cursor checks `after.isdigit()` and then calls int(after): str.isdigit() is true
    for superscripts and circled digits ("\u00b2", "\u2460"), which int() refuses with a ValueError
    that no handler maps, so GET /teams/<id>?after=\u00b2 answers 500."""
    answer = client.get(f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}",
                        query_string={"after": after}, headers=admin_key)
    assert answer.status_code == 400, (answer.status_code, answer.data[:300])


def test_add_to_team_by_address_never_adds_someone_else_than_the_member_of_that_username(
        db: Database, system: Actor, acme: NewOrg, client: FlaskClient) -> None:
    """lookups.find_by_address matches `userName == address OR lower(email) == address` with LIMIT 1 and
    no order: where one member's userName is the typed address and another member's email is the same
    address (emails are not unique, and an IdP user may edit theirs), the console adds whichever row
    the database returns first: here Bob (email alice@acme.test), not Alice (userName alice@acme.test).
    An exact userName must win, or an ambiguous address be refused."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Payroll")
    bob = provision(db, system, acme.org.id, "bob@acme.test", email="alice@acme.test")
    alice = provision(db, system, acme.org.id, "alice@acme.test", email="alice.smith@acme.test")
    owner = sign_in(db, acme.owner.id)
    client.post(f"/console/teams/{team.id}/members",
                data={"csrf_token": owner.csrf, "member": "alice@acme.test", "role": "admin"}, headers=owner.headers())
    with db.reading() as session:
        added = {m.user_id for m in directory.get_team_detail(session, system, acme.org.id, team.id,
                                                              limit=50).members}
    assert bob.id not in added, "Bob was made an admin of Payroll for an address that is Alice's userName"
    assert alice.id in added or not added

