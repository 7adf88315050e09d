"""Hostile review of session 21's changes (confirm_role's own grant deletes and session end; the console
wallet page's forms, limits and ledger in pages). Each test failed on main 7d3d1b4..b5d2199 as reviewed,
fixed since. Both databases.

confirm_role was probed with real sessions (verify_session's actor, session_id set) on both databases:
the owner deleting the org (SAML and break-glass session, SSO required), transferring ownership, an
admin by group editing her group's rule down, deleting and deactivating herself, an owner by group
turning idp_may_grant_owner off: every one passed, so none is kept here.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit.actor import system_actor
from identity import keys
from identity.db import Database
from identity.models import ApiKey
from identity.orgs import NewOrg
from tests.identity.test_console_forms import sign_in
from tests.identity.test_console_gaps import add

SYSTEM = system_actor("tests")


def _wallet(acme: NewOrg) -> str:
    return f"/console/teams/{acme.default_team_id}/wallet"


@pytest.mark.parametrize("position", ["\u00b2", "\u2460", "1\u00b9"])
def test_a_ledger_position_of_digits_int_refuses_is_no_500(client: FlaskClient, db: Database, acme: NewOrg,
                                                           position: str) -> None:
    """?ledger_before= is anyone's to type (a link, a bookmark); a form post carries it back too
    (request.values), so a refused discount rerenders into the same 500."""
    token = sign_in(client, db, acme.owner.id)
    assert client.get(_wallet(acme), query_string={"ledger_before": position}).status_code in (200, 400)
    posted = client.post(_wallet(acme) + "/discount",
                         data={"csrf_token": token, "discount": "101", "ledger_before": position})
    assert posted.status_code == 400


def test_a_ledger_position_past_64_bits_is_no_500(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    sign_in(client, db, acme.owner.id)
    assert client.get(_wallet(acme), query_string={"ledger_before": "9" * 30}).status_code in (200, 400)


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_the_wallet_page_lists_no_unused_key_of_another_member_to_whom_may_not_list_keys(
        client: FlaskClient, db: Database, acme: NewOrg, role: str) -> None:
    """Listing other members' keys is keys.read (owners, admins); a member's list holds their own
    (own_keys.read), as the admin API's GET .../api-keys shows. The wallet page, open to every role,
    now fills its key table with the team's other live keys (spend._team_subjects): a viewer or
    member reads the name and prefix of every key of the team, before any of them spends."""
    with db.transaction() as session:
        issued = keys.create_api_key(session, SYSTEM, acme.org.id, user_id=acme.owner.id,
                                     team_id=acme.default_team_id, name="merger-project-x", scopes=["inference"])
        prefix = session.get_one(ApiKey, issued.id).prefix
    sign_in(client, db, add(db, acme, f"{role}@acme.test", role, acme.default_team_id))
    listed = client.get(f"/api/v1/orgs/{acme.org.slug}/api-keys")  # the rule: their own keys, none of these
    assert listed.status_code in (200, 403) and prefix not in listed.get_data(as_text=True)
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert "merger-project-x" not in page and prefix not in page
