"""The wallet page's forms over HTTP, both databases (issue s21): the discount, the auto top-up, the
limits per key and per member, and the ledger in pages. Each refusal comes back next to its field
with what was typed; a member or viewer can set nothing, an admin only a top-up, and that only where
the org allows it (identity.wallets._authorize_top_up); the services decide, the page only asks them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from audit.actor import system_actor
from identity import keys, teams, topups, usage, wallet_controls, wallets
from identity.db import Database
from identity.orgs import NewOrg
from identity.paging import Window
from identity.usage import UsageRecord
from identity.wallet_models import TopUpRequest
from tests.factories import counts
from tests.identity.test_console_forms import sign_in
from tests.identity.test_console_gaps import add, input_value

SYSTEM = system_actor("tests")
GATEWAY = Actor(type="system", id="gateway:test", display="gateway test")
DOLLAR = 100 * wallets.MICROS_PER_CENT


def _wallet(acme: NewOrg) -> str:
    return f"/console/teams/{acme.default_team_id}/wallet"


def _spent_key(db: Database, acme: NewOrg, dollars: int) -> str:
    """The owner's key of the default team, after spending `dollars` of a $100 top-up."""
    with db.transaction() as session:
        key_id = keys.create_api_key(session, SYSTEM, acme.org.id, user_id=acme.owner.id,
                                     team_id=acme.default_team_id, name="laptop", scopes=["inference"]).id
        wallets.top_up(session, SYSTEM, acme.org.id, acme.default_team_id, 100 * DOLLAR, "INV-0")
    with db.transaction() as session:
        usage.record_usage(session, GATEWAY, [UsageRecord(key_id, "m", dollars * DOLLAR, "r-1")])
    return key_id


def test_discount_is_refused_next_to_its_field_with_what_was_typed(client: FlaskClient, db: Database,
                                                                   acme: NewOrg) -> None:
    token = sign_in(client, db, acme.owner.id)
    for typed in ("101", "-1", "ten", "12.5"):
        answer = client.post(_wallet(acme) + "/discount", data={"csrf_token": token, "discount": typed})
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400 and 'id="discount-error"' in page, typed
        assert input_value(page, "discount") == typed
    assert client.post(_wallet(acme) + "/discount", data={"csrf_token": token, "discount": "15"}).status_code == 303
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert 'id="wallet-discount">15%' in page and input_value(page, "discount") == "15"


def test_auto_top_up_is_set_refused_next_to_its_field_and_turned_off(client: FlaskClient, db: Database,
                                                                     acme: NewOrg) -> None:
    token = sign_in(client, db, acme.owner.id)
    path = _wallet(acme) + "/auto-top-up"
    for fields, slot in (({"threshold": "10", "auto_amount": ""}, "auto_amount"),
                         ({"threshold": "0", "auto_amount": "50"}, "threshold"),  # the domain: positive
                         ({"threshold": "10", "auto_amount": "5.123"}, "auto_amount")):
        answer = client.post(path, data={"csrf_token": token, **fields})
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400 and f'id="{slot}-error"' in page, fields
        assert "micros" not in page.split(f'id="{slot}-error"')[1].split(">", 1)[1].split("<")[0]
        assert (input_value(page, "threshold"), input_value(page, "auto_amount")) == (
            fields["threshold"], fields["auto_amount"])
    set_ = client.post(path, data={"csrf_token": token, "threshold": "10", "auto_amount": "50"})
    assert set_.status_code == 303
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert "below $10.00, charge $50.00" in page
    assert (input_value(page, "threshold"), input_value(page, "auto_amount")) == ("10.00", "50.00")
    assert client.post(path, data={"csrf_token": token, "threshold": "", "auto_amount": ""}).status_code == 303
    assert 'id="wallet-auto-topup">off' in client.get(_wallet(acme)).get_data(as_text=True)


def test_a_pending_top_up_request_is_listed_to_owners_and_admins(client: FlaskClient, db: Database,
                                                                 acme: NewOrg) -> None:
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, SYSTEM, acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 10 * DOLLAR, "amount_micros": 50 * DOLLAR})
    _spent_key(db, acme, 95)  # $5 left: below $10
    admin = add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    sign_in(client, db, admin)
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert 'id="topup-requests"' in page and "top-up requested" in page
    assert "$50.00</td>" in page and '<span class="badge">awaiting payment</span>' in page


def test_key_and_member_limits_are_shown_set_refused_below_spend_and_cleared(client: FlaskClient, db: Database,
                                                                             acme: NewOrg) -> None:
    key_id = _spent_key(db, acme, 3)
    token = sign_in(client, db, acme.owner.id)
    owner = acme.owner.id
    for subject, subject_id in (("key", key_id), ("member", owner)):
        path, slot = f"{_wallet(acme)}/limits/{subject}/{subject_id}", f"{subject}-limit-{subject_id}"
        below = client.post(path, data={"csrf_token": token, "subject_limit": "2"})  # spent $3
        page = below.get_data(as_text=True)
        assert below.status_code == 400 and f'id="{slot}-error"' in page
        assert "below this period&#39;s spend, $3.00" in page  # in dollars, as typed
        assert input_value(page, slot) == "2"
        unreadable = client.post(path, data={"csrf_token": token, "subject_limit": "two"})
        assert unreadable.status_code == 400 and input_value(unreadable.get_data(as_text=True), slot) == "two"
        assert client.post(path, data={"csrf_token": token, "subject_limit": "7.5"}).status_code == 303
        assert input_value(client.get(_wallet(acme)).get_data(as_text=True), slot) == "7.50"
        assert client.post(path, data={"csrf_token": token, "subject_limit": ""}).status_code == 303
        assert input_value(client.get(_wallet(acme)).get_data(as_text=True), slot) == ""


def test_a_limit_on_a_key_without_usage_is_still_shown_to_change(client: FlaskClient, db: Database,
                                                                 acme: NewOrg) -> None:
    with db.transaction() as session:
        key_id = keys.create_api_key(session, SYSTEM, acme.org.id, user_id=acme.owner.id,
                                     team_id=acme.default_team_id, name="idle", scopes=["inference"]).id
        wallet_controls.set_subject_limit(session, SYSTEM, acme.org.id, acme.default_team_id, "key", key_id,
                                          4 * DOLLAR)
    sign_in(client, db, acme.owner.id)
    assert input_value(client.get(_wallet(acme)).get_data(as_text=True), f"key-limit-{key_id}") == "4.00"


def test_a_refused_limit_of_a_key_not_on_the_page_is_shown_at_the_top(client: FlaskClient, db: Database,
                                                                      acme: NewOrg) -> None:
    token = sign_in(client, db, acme.owner.id)
    answer = client.post(f"{_wallet(acme)}/limits/key/00000000-0000-0000-0000-000000000001",
                         data={"csrf_token": token, "subject_limit": "5"})
    assert answer.status_code == 404 and 'class="form-error"' in answer.get_data(as_text=True)


def _forms(acme: NewOrg, key_id: str) -> list[tuple[str, dict[str, str]]]:
    wallet, owner = _wallet(acme), acme.owner.id
    return [(f"{wallet}/discount", {"discount": "10"}),
            (f"{wallet}/auto-top-up", {"threshold": "10", "auto_amount": "50"}),
            (f"{wallet}/limit", {"limit": "50"}),
            (f"{wallet}/limits/key/{key_id}", {"subject_limit": "50"}),
            (f"{wallet}/limits/member/{owner}", {"subject_limit": "50"}),
            (f"{wallet}/top-up", {"amount": "5", "reference": "INV-9"})]


@pytest.mark.parametrize("role", ["member", "viewer", "admin"])
def test_who_may_set_what(client: FlaskClient, db: Database, acme: NewOrg, role: str) -> None:
    """A member or viewer sets nothing and is offered no form; an admin neither, but for a top-up once
    the org allows admins to top up (admins_may_top_up). Members and viewers read no ledger (billing)."""
    key_id = _spent_key(db, acme, 1)
    token = sign_in(client, db, add(db, acme, f"{role}@acme.test", role, acme.default_team_id))
    before = counts(db)
    for path, fields in _forms(acme, key_id):
        assert client.post(path, data={"csrf_token": token, **fields}).status_code == 403, path
    assert counts(db) == before
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert not [path for path, _ in _forms(acme, key_id) if f'action="{path}"' in page]
    assert ('id="ledger"' in page) is (role == "admin")
    if role == "admin":
        with db.transaction() as session:
            wallet_controls.set_settings(session, SYSTEM, acme.org.id, admins_may_top_up=True)
        path, fields = _forms(acme, key_id)[-1]
        assert f'action="{path}"' in client.get(_wallet(acme)).get_data(as_text=True)
        assert client.post(path, data={"csrf_token": token, **fields}).status_code == 303


def test_every_new_form_wants_the_form_token(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    key_id = _spent_key(db, acme, 1)
    sign_in(client, db, acme.owner.id)
    before = counts(db)
    for path, fields in _forms(acme, key_id):
        assert client.post(path, data=fields).status_code == 403, path
        assert client.post(path, data={"csrf_token": "forged", **fields}).status_code == 403, path
    assert counts(db) == before


def test_the_ledger_is_shown_newest_first_in_pages(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    with db.transaction() as session:
        for n in range(30):
            wallets.top_up(session, SYSTEM, acme.org.id, acme.default_team_id, (n + 1) * DOLLAR, f"INV-{n}")
    sign_in(client, db, acme.owner.id)
    first = client.get(_wallet(acme)).get_data(as_text=True)
    assert first.count("<td data-label=\"Kind\">top up</td>") == 25
    assert first.index("INV-29") < first.index("INV-28") and "INV-4<" not in first
    assert "+$30.00" in first and 'rel="next"' in first
    older = first.split('rel="next"')[0].rsplit('href="', 1)[1].split("#")[0].replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert second.count("<td data-label=\"Kind\">top up</td>") == 5
    assert "INV-4<" in second and "INV-0<" in second and "INV-5<" not in second
    assert 'rel="next"' not in second and ">Newest<" in second


def test_the_ledger_names_who_moved_the_money(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """A top-up names the member who made it, usage its key and the key's member, by name, not by id."""
    _spent_key(db, acme, 2)
    token = sign_in(client, db, acme.owner.id)
    assert client.post(_wallet(acme) + "/top-up", data={"csrf_token": token, "amount": "5",
                                                        "reference": "INV-5"}).status_code == 303
    rows = client.get(_wallet(acme)).get_data(as_text=True).split('id="ledger"')[1].split("</tbody>")[0]
    newest, usage_row, first = rows.split("<tr>")[2:5]
    assert "INV-5" in newest and '<td data-label="Who">owner@acme.test</td>' in newest
    assert '<td data-label="Who">laptop (key_' in usage_row and ", owner@acme.test</td>" in usage_row
    assert "-$2.00" in usage_row and "system <code>system</code>" in first


def test_a_key_or_member_without_usage_can_be_given_a_limit_before_it_spends(client: FlaskClient, db: Database,
                                                                             acme: NewOrg) -> None:
    """The team's live keys and its members follow the rows with usage, each with its limit form; a
    revoked key does not (no limit could hold it)."""
    with db.transaction() as session:
        idle, gone = (keys.create_api_key(session, SYSTEM, acme.org.id, user_id=acme.owner.id,
                                          team_id=acme.default_team_id, name=name, scopes=["inference"]).id
                      for name in ("idle", "gone"))
        keys.revoke_api_key(session, SYSTEM, acme.org.id, gone)
    token = sign_in(client, db, acme.owner.id)
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert input_value(page, f"key-limit-{idle}") == "" and f"key-limit-{gone}" not in page
    assert input_value(page, f"member-limit-{acme.owner.id}") == ""
    path = f"{_wallet(acme)}/limits/key/{idle}"
    assert client.post(path, data={"csrf_token": token, "subject_limit": "0"}).status_code == 303  # stop it now
    assert input_value(client.get(_wallet(acme)).get_data(as_text=True), f"key-limit-{idle}") == "0.00"


def _requested(db: Database, acme: NewOrg) -> str:
    """The id of the default team's one pending top-up request ($5 left, below the $10 threshold)."""
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, SYSTEM, acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 10 * DOLLAR, "amount_micros": 50 * DOLLAR})
    _spent_key(db, acme, 95)
    with db.transaction() as session:
        requests = topups.list_requests(session, SYSTEM, acme.org.id, acme.default_team_id, Window(5))
        return str(requests[0].id)


def test_an_owner_cancels_a_top_up_request_on_the_wallet_page(client: FlaskClient, db: Database,
                                                              acme: NewOrg) -> None:
    """The way out of a team deletion refused while the hook holds a request, without the API."""
    request_id = _requested(db, acme)
    token = sign_in(client, db, acme.owner.id)
    action = f"{_wallet(acme)}/topup-requests/{request_id}/cancel"
    assert f'action="{action}"' in client.get(_wallet(acme)).get_data(as_text=True)
    assert client.post(action, data={"csrf_token": token}).status_code == 303
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert "Top-up request cancelled." in page and f'action="{action}"' not in page
    again = client.post(action, data={"csrf_token": token})
    assert again.status_code == 409 and 'role="alert"' in again.get_data(as_text=True)


def test_an_admin_is_offered_no_cancel_and_a_forged_one_is_refused(client: FlaskClient, db: Database,
                                                                   acme: NewOrg) -> None:
    request_id = _requested(db, acme)
    token = sign_in(client, db, add(db, acme, "ada@acme.test", "admin", acme.default_team_id))
    action = f"{_wallet(acme)}/topup-requests/{request_id}/cancel"
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert 'id="topup-requests"' in page and f'action="{action}"' not in page
    before = counts(db)
    assert client.post(action, data={"csrf_token": token}).status_code == 403
    assert counts(db) == before


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_the_teams_page_says_why_a_team_being_paid_is_not_deleted(client: FlaskClient, db: Database,
                                                                  acme: NewOrg, role: str) -> None:
    """identity.team_deletion refuses while the hook holds a request; the page says so, with the way out."""
    with db.transaction() as session:
        team = teams.create_team(session, SYSTEM, acme.org.id, "Paid")
        wallet_controls.configure_wallet(session, SYSTEM, acme.org.id, team.id,
                                         auto_topup={"threshold_micros": 10 * DOLLAR, "amount_micros": 50 * DOLLAR})
    with db.transaction() as session:
        [request] = session.scalars(select(TopUpRequest).where(TopUpRequest.team_id == team.id)).all()
        request.status = topups.DELIVERED
    user = acme.owner.id if role == "owner" else add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    sign_in(client, db, user)
    page = client.get("/console/teams").get_data(as_text=True)
    assert "A top-up request is being paid" in page and f'href="/console/teams/{team.id}/wallet"' in page
    assert f'action="/console/teams/{team.id}/delete"' not in page


def test_a_request_being_delivered_is_offered_no_cancel(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """Claimed by a sender, its POST perhaps in flight: its outcome is not known (topups.in_flight)."""
    request_id = _requested(db, acme)
    with db.transaction() as session:
        claimed = session.get(TopUpRequest, request_id)
        assert claimed is not None
        claimed.claimed_until = clock.now() + timedelta(minutes=5)
    sign_in(client, db, acme.owner.id)
    page = client.get(_wallet(acme)).get_data(as_text=True)
    assert 'id="topup-requests"' in page and f"/topup-requests/{request_id}/cancel" not in page
