"""Deleting a team whose wallet holds money is the owners' (DESIGN 3.2: wallets are the owner's).

The balance goes to no other team and no top-up or debit reaches it again, so the deletion spends the
org's money: an admin, who may delete an empty team, is refused one that holds a balance, through the
admin API, the console and the domain alike, before anything is written; the console offers an admin
no Delete for it and says why. An owner deletes it, and `team.deleted` records what was lost.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, team_deletion, teams, wallets
from identity.db import Database
from identity.errors import PermissionDenied
from identity.models import Team
from identity.orgs import NewOrg
from identity.vocabulary import Role
from tests.factories import actions, admin_and_member, counts
from tests.identity.test_api_sessions import ORIGIN, sign_in


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client(use_cookies=False)


def _teams(db: Database, system: Actor, acme: NewOrg) -> tuple[str, str, str, str]:
    """Ann (an admin, with an admin API key), a funded team 'Research' ($0.25) and an empty 'Design'."""
    ann, _ = admin_and_member(db, system, acme.org.id)
    with db.transaction() as session:
        funded = teams.create_team(session, system, acme.org.id, "Research").id
        empty = teams.create_team(session, system, acme.org.id, "Design").id
        wallets.top_up(session, system, acme.org.id, funded, 25_000_000, "inv 7")
        secret = keys.create_api_key(session, system, acme.org.id, user_id=ann.id, team_id=acme.default_team_id,
                                     name="ann", scopes=["admin"]).secret
    return ann.id, secret, funded, empty


def test_an_admin_is_refused_a_funded_team_and_nothing_is_written(client: FlaskClient, db: Database, system: Actor,
                                                                   acme: NewOrg) -> None:
    ann, secret, funded, empty = _teams(db, system, acme)
    before, trail = counts(db), actions(db, acme.org.id)
    api = f"/api/v1/orgs/{acme.org.slug}/teams"
    refused = client.delete(f"{api}/{funded}", json={"confirm": "Research"}, headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 403 and refused.content_type == "application/problem+json"
    assert refused.json["code"] == "permission_denied" and refused.json["balance_micros"] == 25_000_000
    assert "only an owner may delete it" in refused.json["detail"]
    assert counts(db) == before and actions(db, acme.org.id) == trail
    with db.reading() as session:
        assert session.get(Team, funded) is not None
    # The same admin deletes the empty team: the rule is the money, not the team.
    assert client.delete(f"{api}/{empty}", json={"confirm": "Design"},
                         headers={"Authorization": f"Bearer {secret}"}).status_code == 204
    as_ann = Actor("user", ann, "ann@acme.test", org_id=acme.org.id, role=Role.ADMIN)
    with pytest.raises(PermissionDenied), db.transaction() as session:
        team_deletion.delete_team(session, as_ann, acme.org.id, funded)


def test_an_owner_deletes_a_funded_team_and_the_loss_is_recorded(db: Database, system: Actor, acme: NewOrg) -> None:
    _, _, funded, _ = _teams(db, system, acme)
    owner = Actor("user", acme.owner.id, acme.owner.user_name, org_id=acme.org.id, role=Role.OWNER)
    with db.transaction() as session:
        team_deletion.delete_team(session, owner, acme.org.id, funded, confirm="Research")
    assert actions(db, acme.org.id)[-1] == "team.deleted"
    with db.reading() as session:
        assert session.get(Team, funded) is None


def test_the_console_offers_an_admin_no_delete_for_a_funded_team(client: FlaskClient, db: Database, system: Actor,
                                                                 acme: NewOrg) -> None:
    ann, _, funded, empty = _teams(db, system, acme)
    browser = sign_in(db, ann)
    page = client.get("/console/teams", headers={"Cookie": browser.cookie}).get_data(as_text=True)
    assert f'id="delete-kept-{funded}"' in page and "only an owner may delete it" in page
    assert f'action="/console/teams/{funded}/delete"' not in page
    assert f'action="/console/teams/{empty}/delete"' in page
    trail = actions(db, acme.org.id)
    posted = client.post(f"/console/teams/{funded}/delete", data={"csrf_token": browser.csrf, "confirm": "Research"},
                         headers={"Cookie": browser.cookie, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert posted.status_code == 403 and "only an owner may delete it" in posted.get_data(as_text=True)
    assert actions(db, acme.org.id) == trail
    owner_page = client.get("/console/teams", headers={"Cookie": sign_in(db, acme.owner.id).cookie})
    assert f'action="/console/teams/{funded}/delete"' in owner_page.get_data(as_text=True)
