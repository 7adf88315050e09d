"""The admin API as a plain member reads their team's budget with their own session (a review; each
test failed on the code it was written against): the numbers it gives must be the ones the key
check and the usage answer give (DESIGN.md 3.8). Both databases.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient

from audit.actor import system_actor
from identity import gateway, keys, members, wallet_controls, wallets
from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_console_forms import sign_in

SYSTEM = system_actor("tests")
DOLLAR = 100 * wallets.MICROS_PER_CENT


@dataclass(frozen=True)
class Member:
    user_id: str
    key_id: str
    secret: str
    credential: str


@pytest.fixture
def bob(db: Database, acme: NewOrg) -> Member:
    """A member of the Default team with a key there, and the gateway's credential."""
    with db.transaction() as session:
        user_id = members.add_member(session, SYSTEM, acme.org.id, email="bob@acme.test", role="member",
                                     team_id=acme.default_team_id).id
        key = keys.create_api_key(session, SYSTEM, acme.org.id, user_id=user_id, team_id=acme.default_team_id,
                                  name="bob laptop", scopes=["inference"])
        credential = gateway.create_credential(session, SYSTEM).secret
    return Member(user_id, key.id, key.secret, credential)


def _check(client: FlaskClient, bob: Member) -> dict[str, object]:
    answer = client.post("/api/v1/keys/verify", headers={"Authorization": f"Bearer {bob.credential}"},
                         json={"key": bob.secret})
    assert answer.status_code == 200
    found: dict[str, object] = answer.get_json()
    return found


def test_a_team_wallets_remaining_is_what_its_keys_may_still_spend(client: FlaskClient, db: Database,
                                                                  acme: NewOrg, bob: Member) -> None:
    """GET .../wallet's `remaining_micros` ("what is left", README) is the limit less the spend, whatever
    the balance: with a $10 limit and $1 in the wallet it tells the member $10 is left, while the key
    check (`budget.remaining_micros`, identity.wallet_periods.remaining: "the one computation of it")
    says $1, and a $2 request is refused `balance_exhausted`."""
    team = acme.default_team_id
    with db.transaction() as session:
        wallets.top_up(session, SYSTEM, acme.org.id, team, 1 * DOLLAR, "invoice 1")
        wallet_controls.configure_wallet(session, SYSTEM, acme.org.id, team, spend_limit=10 * DOLLAR)
    sign_in(client, db, bob.user_id)
    wallet = client.get(f"/api/v1/orgs/acme/teams/{team}/wallet").get_json()
    budget = _check(client, bob)["budget"]
    assert isinstance(budget, dict) and budget["remaining_micros"] == 1 * DOLLAR
    assert wallet["balance_micros"] == 1 * DOLLAR
    assert wallet["remaining_micros"] == budget["remaining_micros"]

