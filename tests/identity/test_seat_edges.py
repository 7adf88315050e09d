"""Seats, billing and the org's owners: bugs a review found (each test failed before its fix)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from audit import Actor, clock
from identity import (
    groups,
    keys,
    mappings,
    org_lifecycle,
    orgs,
    owners,
    teams,
    topups,
    usage,
    users,
    wallet_controls,
    wallets,
)
from identity.billing import check_org
from identity.db import Database
from identity.errors import DomainError, LastOwner
from identity.models import Org, SeatCharge
from identity.team_deletion import delete_team
from identity.wallet_models import TopUpRequest
from identity.web.cli import main
from tests.factories import provision

UTC = dt.UTC


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def _org(db: Database, system: Actor, created: dt.datetime, **settings) -> orgs.NewOrg:
    with clock.frozen_at(created), db.transaction() as session:
        return orgs.create_org(session, system, "Seated", owner_email="owner@seated.test", **settings)


def _ledger(db: Database, org_id: str) -> list[tuple[str, int, int]]:
    with db.reading() as session:
        return [(c.kind, c.seats, c.amount_cents) for c in session.scalars(
            select(SeatCharge).where(SeatCharge.org_id == org_id).order_by(SeatCharge.created_at, SeatCharge.kind))]


def _seats(db: Database, org_id: str) -> tuple[int, int]:
    with db.reading() as session:
        org = session.get(Org, org_id)
        return org.seats_used, org.purchased_seats


# --- A member read before the org lock is acted on as it was then (PostgreSQL, READ COMMITTED) ---------

@pytest.mark.postgres_only("SQLite's BEGIN IMMEDIATE serialises whole write transactions; the race needs two")
def test_two_overlapping_deactivations_of_one_member_free_one_seat(db: Database, system: Actor) -> None:
    """Okta retries a PATCH active=false whose first attempt is still running: both requests read
    the member (users.deactivate_user's own get_user, before the org lock), one commits, the other
    gets the lock and deactivates the member it read, active and seated, a second time."""
    new = _org(db, system, at(2026, 4, 1), included_seats=5)
    with clock.frozen_at(at(2026, 4, 2)):
        alice = provision(db, system, new.org.id, "alice@seated.test", source="scim")
        provision(db, system, new.org.id, "bob@seated.test", source="scim")
    assert _seats(db, new.org.id) == (3, 0)
    with clock.frozen_at(at(2026, 4, 3)):
        with db.transaction() as first:
            # What _target_of reads before the lock (held, as deactivate_user holds it across the lock).
            held = users.get_user(first, new.org.id, alice.id)
            with db.transaction() as second:                  # the other request runs and commits meanwhile
                users.deactivate_user(second, system, new.org.id, alice.id)
            assert users.deactivate_user(first, system, new.org.id, alice.id) is held
    with db.reading() as session:
        assert check_org(session, new.org.id) == []
    assert _seats(db, new.org.id) == (2, 0)                   # the owner and bob


@pytest.mark.postgres_only("SQLite's BEGIN IMMEDIATE serialises whole write transactions; the race needs two")
def test_two_overlapping_reactivations_of_one_member_take_and_charge_one_seat(db: Database, system: Actor) -> None:
    """Two PATCH active=true for one member overlap: the second reactivates the member it read before
    the lock (inactive, seatless) again, counting a second seat and buying one more."""
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 1)):
        alice = provision(db, system, new.org.id, "alice@seated.test", source="scim")   # buys a seat: 1000
    with clock.frozen_at(at(2026, 4, 6)), db.transaction() as session:
        users.deactivate_user(session, system, new.org.id, alice.id)
    with clock.frozen_at(at(2026, 4, 7)):
        provision(db, system, new.org.id, "bob@seated.test", source="scim")             # takes the freed seat
    with clock.frozen_at(at(2026, 4, 16)):
        with db.transaction() as first:
            held = users.get_user(first, new.org.id, alice.id)
            with db.transaction() as second:
                users.reactivate_user(second, system, new.org.id, alice.id)             # 15 of 30 days: 500
            assert users.reactivate_user(first, system, new.org.id, alice.id) is held
    assert _ledger(db, new.org.id) == [("seat_purchase", 1, 1000), ("seat_purchase", 1, 500)]
    assert _seats(db, new.org.id) == (3, 2)
    with db.reading() as session:
        assert check_org(session, new.org.id) == []


# --- Included seats lowered below the seats in use ---------------------------------------------------------

def test_lowering_included_seats_below_use_leaves_members_unpaid_and_billing_check_failing(
        db: Database, system: Actor) -> None:
    """The owner lowers included_seats from 3 to 1 while 3 seats are used (none purchased): the
    change is accepted as is, so two members hold seats nobody pays for and `billing check` fails on
    an org nobody touched otherwise. Either the change is refused or the missing seats are bought."""
    new = _org(db, system, at(2026, 4, 1), included_seats=3)
    with clock.frozen_at(at(2026, 4, 2)):
        provision(db, system, new.org.id, "a@seated.test")
        provision(db, system, new.org.id, "b@seated.test")
    assert _seats(db, new.org.id) == (3, 0)
    with clock.frozen_at(at(2026, 4, 16)):
        try:
            with db.transaction() as session:
                orgs.update_settings(session, system, new.org.id, {"included_seats": 1})
        except Exception:  # noqa: BLE001 - refusing the change is one acceptable fix
            pass
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        org = session.get(Org, new.org.id)
        assert org.seats_used <= org.included_seats + org.purchased_seats
        assert check_org(session, new.org.id) == []


# --- The last owner taken away by re-deriving a group's grants ---------------------------------------------

def _owner_through_group(db: Database, system: Actor, new: orgs.NewOrg) -> tuple[str, str, str]:
    """Make bob the org's only active owner, an owner through the IdP group `g-owners` (mapped to a
    team `Owners` and the org role owner); return bob's id, the team's and the mapping's."""
    bob = provision(db, system, new.org.id, "bob@seated.test", source="scim")
    with db.transaction() as session:
        orgs.update_settings(session, system, new.org.id, {"idp_may_grant_owner": True})
        team = teams.create_team(session, system, new.org.id, "Owners")
        groups.create_group(session, system, new.org.id, display_name="IdP owners", external_id="g-owners",
                            member_ids=[bob.id])
        rule = mappings.create_mapping(session, system, new.org.id, group_external_id="g-owners",
                                       team_id=team.id, org_role="owner")
        team_id, rule_id = team.id, rule.id
    with db.transaction() as session:
        assert users.org_role(session, bob.id) == "owner"
        users.change_role(session, system, new.org.id, new.owner.id, "admin")   # bob is the only owner now
    with db.reading() as session:
        assert owners.active_owners(session, new.org.id) == 1
    return bob.id, team_id, rule_id


def _still_has_an_owner(db: Database, org_id: str) -> None:
    with db.reading() as session:
        assert owners.active_owners(session, org_id) >= 1


def test_deleting_the_team_of_the_mapping_that_makes_the_last_owner_leaves_no_owner(
        db: Database, system: Actor) -> None:
    """delete_team deletes the mappings into the team; delete_mapping re-derives the group's grants
    (groups.reapply), which drops the owner grant with no last-owner check."""
    new = _org(db, system, at(2026, 4, 1))
    bob_id, team_id, _ = _owner_through_group(db, system, new)
    try:
        with db.transaction() as session:
            delete_team(session, system, new.org.id, team_id)
    except LastOwner:
        pass
    _still_has_an_owner(db, new.org.id)


def test_editing_the_mapping_that_makes_the_last_owner_down_to_admin_leaves_no_owner(
        db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1))
    _, _, rule_id = _owner_through_group(db, system, new)
    try:
        with db.transaction() as session:
            mappings.update_mapping(session, system, new.org.id, rule_id, {"org_role": "admin"})
    except LastOwner:
        pass
    _still_has_an_owner(db, new.org.id)


# --- A deleted org is still asked for money ----------------------------------------------------------------

def test_a_deleted_orgs_pending_auto_top_up_is_still_sent_to_the_payment_hook(db: Database, system: Actor,
                                                                               acme: orgs.NewOrg) -> None:
    """delete_org stops everything that could act for the org, but leaves its auto top-up's pending
    request pending, and topups.deliver sends it to the operator's payment hook: a deleted customer
    is charged 2000 micro-cents more."""
    owner = Actor(type="user", id=acme.owner.id, display="owner", org_id=acme.org.id, role="owner")
    with db.transaction() as session:
        key_id = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                     team_id=acme.default_team_id, name="k", scopes=["inference"]).id
        wallets.top_up(session, owner, acme.org.id, acme.default_team_id, 600, "inv 1")  # first: see configure_wallet
        wallet_controls.configure_wallet(session, owner, acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 500, "amount_micros": 2000})
    with db.transaction() as session:
        usage.record_usage(session, Actor(type="system", id="gateway:test", display="gateway"),
                           [usage.UsageRecord(key_id, "m", 200, "r1")])
    with db.reading() as session:
        assert [r.status for r in session.scalars(select(TopUpRequest))] == ["pending"]
    with db.transaction() as session:
        org_lifecycle.delete_org(session, system, acme.org.id, confirm=acme.org.slug)
    sent: list[bytes] = []
    report = topups.deliver(db, ("https://pay.example/hook", "s3cret"), system,
                            post=lambda url, body, headers: sent.append(body))
    assert (report, sent) == ({"delivered": 0, "failed": 0}, [])


# --- Ownership "transferred" from someone who is no owner --------------------------------------------------

def test_an_operators_transfer_from_a_viewer_promotes_the_viewer_to_admin(db: Database, system: Actor,
                                                                        acme: orgs.NewOrg) -> None:
    """transfer_ownership never checks that `from_user_id` is an owner: named by the operator, a
    viewer is "demoted" to admin (a promotion), and the real owner stays an owner while the audit
    log says ownership moved from the viewer."""
    viewer = provision(db, system, acme.org.id, "viewer@acme.test", role="viewer")
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    try:
        with db.transaction() as session:
            org_lifecycle.transfer_ownership(session, system, acme.org.id, bob.id, from_user_id=viewer.id)
    except DomainError:  # refusing is the fix
        pass
    with db.reading() as session:
        assert users.org_role(session, viewer.id) == "viewer"


# --- `identity billing renew` -------------------------------------------------------------------------------

def test_billing_renew_for_an_unknown_org_fails_with_an_error_not_a_traceback(runner: CliRunner,
                                                                                acme: orgs.NewOrg) -> None:
    """`billing check --org nope` prints "error: no org with slug 'nope'" and exits 1; `billing renew
    --org nope` lets NotFound escape (a Python traceback, nothing on stdout/stderr of its own)."""
    result = runner.invoke(main, ["billing", "renew", "--org", "nope"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "error: no org with slug 'nope'" in result.output
