"""Seat accounting under parallel provisioning: the cap holds, no seat is bought twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from click.testing import CliRunner
from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import orgs, users
from identity.billing import check_org
from identity.db import Database
from identity.errors import Conflict, SeatCapReached
from identity.models import Org, SeatCharge, User
from identity.service import run
from identity.web.cli import main

THREADS, REQUESTS, CAP = 32, 200, 151  # the owner holds one seat: 150 of the 200 can get in


def _provision_all(db: Database, actor: Actor, org_id: str) -> list[str]:
    def one(i: int) -> str:
        try:
            run(db, actor, users.provision_user, org_id, user_name=f"user{i}@par.test", source="scim")
            return "ok"
        except SeatCapReached:
            return "cap"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(REQUESTS)))


def test_parallel_provisioning_never_overruns_the_cap_or_charges_twice(
        db: Database, system: Actor, runner: CliRunner) -> None:
    with db.transaction() as session:
        new = orgs.create_org(session, system, "Parallel", owner_email="owner@par.test", max_seats=CAP)
    outcomes = _provision_all(db, system, new.org.id)
    assert outcomes.count("ok") == CAP - 1 and outcomes.count("cap") == REQUESTS - CAP + 1

    # Retried requests (the IdP resends everything) charge nothing more.
    retried = _provision_all(db, system, new.org.id)
    assert "ok" not in retried

    with db.reading() as session:
        org = session.get(Org, new.org.id)
        purchases = session.scalar(select(func.count()).select_from(SeatCharge).where(SeatCharge.org_id == org.id))
        total = session.scalar(select(func.sum(SeatCharge.amount_cents)).where(SeatCharge.org_id == org.id))
        members = session.scalar(select(func.count()).select_from(User).where(User.org_id == org.id))
        by_action = dict(session.execute(select(AuditEvent.action, func.count()).where(AuditEvent.org_id == org.id)
                                         .group_by(AuditEvent.action)).all())
        seqs = list(session.scalars(select(AuditEvent.seq).where(AuditEvent.org_id == org.id).order_by(AuditEvent.seq)))
        assert check_org(session, org.id) == []
    assert members == org.seats_used == CAP
    assert org.purchased_seats == purchases == CAP - org.included_seats
    assert 0 < total <= purchases * org.seat_price_cents
    assert by_action["seat.purchased"] == purchases and by_action["user.created"] == CAP
    assert by_action["seat.refused"] == outcomes.count("cap") + retried.count("cap")
    assert seqs == list(range(1, len(seqs) + 1))  # one unforked chain
    result = runner.invoke(main, ["billing", "check", "--org", "parallel"])
    assert result.exit_code == 0, result.output


def test_parallel_demotions_keep_one_owner(db: Database, system: Actor) -> None:
    with db.transaction() as session:
        new = orgs.create_org(session, system, "Owners", owner_email="one@own.test")
        second = users.provision_user(session, system, new.org.id, user_name="two@own.test", role="owner",
                                      source="manual")
    from identity.errors import LastOwner

    def demote(user_id: str) -> str:
        try:
            run(db, system, users.change_role, new.org.id, user_id, "admin")
            return "ok"
        except LastOwner:
            return "refused"

    for _ in range(3):  # the race is narrow: try it a few times
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(demote, [new.owner.id, second.id]))
        with db.reading() as session:
            owners = [u for u in (new.owner.id, second.id) if users.org_role(session, u) == "owner"]
        assert len(owners) == 1 and outcomes == ["ok", "refused"]
        with db.transaction() as session:
            users.change_role(session, system, new.org.id, new.owner.id if not owners else
                              ({new.owner.id, second.id} - set(owners)).pop(), "owner")


def test_parallel_requests_for_one_user_name_give_one_member_and_conflicts(db: Database, system: Actor) -> None:
    from identity import groups

    with db.transaction() as session:
        new = orgs.create_org(session, system, "Racing", owner_email="owner@race.test")

    def create_user(_: int) -> str:
        try:
            run(db, system, users.provision_user, new.org.id, user_name="Same@Race.test", source="scim")
            return "ok"
        except Conflict:
            return "conflict"

    def create_group(_: int) -> str:
        try:
            run(db, system, groups.create_group, new.org.id, display_name="Same Group")
            return "ok"
        except Conflict:
            return "conflict"

    for call in (create_user, create_group):
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(call, range(8)))
        assert sorted(outcomes) == ["conflict"] * 7 + ["ok"], outcomes
