"""Seats, billing and the org's end of life (DESIGN.md 3.2, 3.4) attacked by a hostile review: each
test asserts the rule and failed when it was written.

- a renewal charges the cycle that began at the boundary on the plan in force at that boundary,
  whether cron charged it then or the first seat operation after it does;
- the seat ledger's cycle (the billing page's figures) counts pending invitations, as the seat
  preview does and the API document says of `cap_left`;
- a deleted org takes no new member, seat or charge, and gets no new SCIM credential.
"""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from identity import keys, orgs, seats, users
from identity.db import Database
from identity.errors import DomainError
from identity.models import Org, ScimClient, SeatCharge, User
from identity.orgs import NewOrg
from identity.service import run
from identity.web.cli import main
from tests.factories import provision
from tests.identity.test_api_sessions import sign_in
from tests.identity.test_seat_edges import _org, at  # an org made at a given time, and the times


def _renewals(db: Database, org_id: str) -> list[tuple[dt.datetime, int, int, int]]:
    with db.reading() as session:
        return [(c.cycle_start, c.seats, c.unit_price_cents, c.amount_cents) for c in session.scalars(
            select(SeatCharge).where(SeatCharge.org_id == org_id, SeatCharge.kind == "seat_renewal"))]


def _auth(db: Database, system: Actor, new: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, new.org.id, user_id=new.owner.id, team_id=new.default_team_id,
                                  name="owner", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


# --- The plan changed after the boundary, before the renewal ran ------------------------------------------

@pytest.mark.parametrize("change", [{"seat_price_cents": 2000}, {"included_seats": 2}])
def test_a_plan_changed_after_the_boundary_does_not_change_the_renewal_of_that_boundary(
        db: Database, system: Actor, change: dict[str, int]) -> None:
    """May 1 ends April's cycle: one purchased seat (2 members, 1 included at $10) renews at $10.
    Nothing touches seats on May 1 and cron has not run yet; on May 2 the owner raises the price to
    $20 (or the included seats to 2). The renewal that the next seat operation runs lazily
    (seats.renew_if_due) reads the plan as it is then, so May's cycle is charged $20 (or nothing),
    whereas cron on May 1 would have charged $10: README promises the lazy renewal "so a missed cron
    loses nothing", not that it reprices the past. A plan change must first renew what is due
    (orgs._change_settings holds the org lock already)."""
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 1, 1)):
        provision(db, system, new.org.id, "a@seated.test")              # buys a seat at $10
    with clock.frozen_at(at(2026, 5, 2)), db.transaction() as session:
        orgs.update_settings(session, system, new.org.id, change)
    with clock.frozen_at(at(2026, 5, 3)):
        run(db, system, seats.renew_org, new.org.id)
    assert _renewals(db, new.org.id) == [(at(2026, 5, 1), 1, 1000, 1000)]


# --- The billing page's seat figures leave pending invitations out ----------------------------------------

def test_the_seat_ledgers_cycle_counts_pending_invitations_as_the_seat_preview_does(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """`GET .../seat-charges` answers `current_cycle.seats` in the API document's `Seats` schema, whose
    `cap_left` is "members max_seats still lets in once pending invitations are accepted"; but
    charges._cycle_totals builds it with seats.preview(org) and no pending invitations, so with a
    cap of 5, one member and two pending invitations it says 4 where `GET .../seats` says 2, and the
    billing page (which renders these figures) never shows its "N pending invitation(s) will take a
    seat each" line and calls the next member free while the invitations already hold those seats."""
    auth = _auth(db, system, acme)
    assert client.patch("/api/v1/orgs/acme/settings", json={"max_seats": 5}, headers=auth).status_code == 200
    for email in ("a@acme.test", "b@acme.test", "c@acme.test"):
        assert client.post("/api/v1/orgs/acme/invitations", json={"email": email}, headers=auth).status_code == 201
    preview = client.get("/api/v1/orgs/acme/seats", headers=auth).json
    ledger = client.get("/api/v1/orgs/acme/seat-charges", headers=auth).json["current_cycle"]["seats"]
    assert (preview["pending_invitations"], preview["cap_left"]) == (3, 1)
    assert ledger == preview
    browser = client.application.test_client(use_cookies=False)  # a client with a cookie jar drops a Cookie header
    page = browser.get("/console/billing", headers={"Cookie": sign_in(db, acme.owner.id).cookie})
    assert page.status_code == 200 and b"3 pending invitation(s) will take a seat each" in page.data


# --- A deleted org keeps taking members -------------------------------------------------------------------

def test_no_member_seat_or_charge_is_added_to_a_deleted_org(client: FlaskClient, db: Database, system: Actor,
                                                            acme: NewOrg) -> None:
    """Deleting an org deprovisions its members and frees its seats (org_lifecycle.delete_org), but
    nothing stops a member being provisioned afterwards: a SCIM POST that authenticated before the
    deletion committed and waited for the org lock, JIT through an SSO connection configured again,
    or any service call goes through users.provision_user and seats.take_seat, which never look at
    `deleted_at`. Four new members in the deleted org: seats taken and one bought, charged to an org
    that no longer exists. The domain must refuse every new member of a deleted org."""
    assert client.delete("/api/v1/orgs/acme", json={"confirm": "acme"}, headers=_auth(db, system, acme)).status_code \
        == 204
    refused = 0
    for n in range(4):
        try:
            run(db, system, users.provision_user, acme.org.id, user_name=f"ghost{n}@acme.test", source="scim")
        except DomainError:
            refused += 1
    with db.reading() as session:
        org = session.get_one(Org, acme.org.id)
        live = session.scalars(select(User).where(User.org_id == acme.org.id, User.deleted_at.is_(None))).all()
        charged = session.scalars(select(SeatCharge).where(SeatCharge.org_id == acme.org.id)).all()
    assert (refused, len(live), org.seats_used, len(charged)) == (4, 0, 0, 0)


def test_the_operator_cannot_make_a_scim_client_for_a_deleted_org(client: FlaskClient, db: Database, system: Actor,
                                                                  acme: NewOrg, cli_env: dict[str, str]) -> None:
    """`identity scim client create --org acme` after the org's deletion prints a working client_id and
    secret (scim_credentials.create_scim_client asks only the actor's permission), whose access token
    then provisions members into the deleted org over SCIM. Deleting an org revokes every credential
    "in the same transaction" (README); making a new one for it must be refused."""
    assert client.delete("/api/v1/orgs/acme", json={"confirm": "acme"}, headers=_auth(db, system, acme)).status_code \
        == 204
    made = CliRunner(env=cli_env).invoke(main, ["scim", "client", "create", "--org", "acme", "--json"])
    assert made.exit_code == 1 and "error:" in made.output, made.output
    with db.reading() as session:
        assert session.scalars(select(ScimClient).where(ScimClient.revoked_at.is_(None))).all() == []

