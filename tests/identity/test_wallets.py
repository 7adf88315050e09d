"""Team wallets in the domain (DESIGN.md 3.8; issue 18): top-ups, credits, limits, discount rounding,
periods, the auto top-up and its hook, `identity billing check`. Both databases."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import keys, team_deletion, teams, topups, usage, wallet_controls, wallet_periods, wallets
from identity.billing import check_org
from identity.db import Database
from identity.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from identity.orgs import NewOrg
from identity.seats import cycle_at
from identity.usage import UsageRecord
from identity.wallet_models import TopUpRequest, Wallet, WalletEntry
from identity.web.cli import main
from tests.factories import actions, provision

GATEWAY = Actor(type="system", id="gateway:test", display="gateway test")


def owner(acme: NewOrg) -> Actor:
    return Actor(type="user", id=acme.owner.id, display="owner", org_id=acme.org.id, role="owner")


def as_role(acme: NewOrg, user_id: str, role: str) -> Actor:
    return Actor(type="user", id=user_id, display=role, org_id=acme.org.id, role=role)


def key_of(db: Database, acme: NewOrg, system: Actor, user_id: str | None = None) -> str:
    with db.transaction() as session:
        return keys.create_api_key(session, system, acme.org.id, user_id=user_id or acme.owner.id,
                                   team_id=acme.default_team_id, name="k", scopes=["inference"]).id


def post(db: Database, *records: UsageRecord) -> list[usage.Outcome]:
    with db.transaction() as session:
        return usage.record_usage(session, GATEWAY, list(records))


def top_up(db: Database, acme: NewOrg, micros: int, reference: str = "") -> None:
    reference = reference or f"inv {micros} {uuid.uuid4()}"
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, micros, reference)


def wallet(db: Database, team_id: str) -> Wallet:
    with db.reading() as session:
        return session.get_one(Wallet, team_id)


def ledger_rows(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(WalletEntry)) or 0


def test_a_top_up_credits_the_ledger_and_is_audited(db: Database, acme: NewOrg) -> None:
    top_up(db, acme, 5_000_000, "invoice 7")
    assert wallet(db, acme.default_team_id).balance_micros == 5_000_000
    assert actions(db, acme.org.id)[-1] == "wallet.topped_up"
    with db.reading() as session:
        entry = session.scalars(select(WalletEntry)).one()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.topped_up")).one()
    assert (entry.kind, entry.amount_micros, entry.reference) == ("top_up", 5_000_000, "invoice 7")
    assert event.changes["balance_micros"] == {"before": 0, "after": 5_000_000}
    with db.reading() as session:
        assert check_org(session, acme.org.id) == []


@pytest.mark.parametrize("value", [0, -1, 1.5, 1.0, "100", True, None, 10**15 + 1, [1]])
def test_bad_amounts_are_refused_naming_the_field_and_write_nothing(db: Database, acme: NewOrg, value: object) -> None:
    with pytest.raises(InvalidValue) as refused, db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, value, "x")
    assert refused.value.context["field"] == "amount_micros"
    assert ledger_rows(db) == 0


def test_a_member_may_not_top_up_nor_an_admin_unless_the_org_allows_it(db: Database, system: Actor,
                                                                         acme: NewOrg) -> None:
    member = provision(db, system, acme.org.id, "m@acme.test", role="member")
    admin = provision(db, system, acme.org.id, "a@acme.test", role="admin")
    for actor in (as_role(acme, member.id, "member"), as_role(acme, admin.id, "admin")):
        with pytest.raises(PermissionDenied), db.transaction() as session:
            wallets.top_up(session, actor, acme.org.id, acme.default_team_id, 100, "x")
    with pytest.raises(PermissionDenied), db.transaction() as session:  # the setting is the owner's
        wallet_controls.set_settings(session, as_role(acme, admin.id, "admin"), acme.org.id, admins_may_top_up=True)
    with db.transaction() as session:
        wallet_controls.set_settings(session, owner(acme), acme.org.id, admins_may_top_up=True)
    with db.transaction() as session:
        wallets.top_up(session, as_role(acme, admin.id, "admin"), acme.org.id, acme.default_team_id, 100, "x")
    with pytest.raises(PermissionDenied), db.transaction() as session:  # limits stay the owner's
        wallet_controls.configure_wallet(session, as_role(acme, admin.id, "admin"), acme.org.id,
                                         acme.default_team_id, spend_limit=10)
    assert ledger_rows(db) == 1


def test_another_orgs_team_is_not_found(db: Database, system: Actor, acme: NewOrg) -> None:
    from identity import orgs

    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="o@rival.test")
    with pytest.raises(NotFound), db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, rival.default_team_id, 100, "x")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        wallets.top_up(session, owner(acme), rival.org.id, rival.default_team_id, 100, "x")
    assert ledger_rows(db) == 0


@pytest.mark.parametrize(("cost", "discount", "debit"), [
    (1000, 0, 1000), (1000, 100, 0), (1000, 15, 850), (1, 50, 1),  # 0.5 rounds half up to 1
    (3, 50, 2), (5, 10, 5),  # 1.5 -> 2; 4.5 -> 5
    (7, 33, 5),  # 4.69 -> 5
    (999_999, 1, 989_999),  # 989,999.01 -> 989,999
])
def test_the_discount_is_applied_first_and_rounded_half_up(cost: int, discount: int, debit: int) -> None:
    assert usage.discounted(cost, discount) == debit


def test_a_discounted_debit_lands_in_the_ledger(db: Database, system: Actor, acme: NewOrg) -> None:
    key_id = key_of(db, acme, system)
    top_up(db, acme, 100)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id, discount_percent=50)
    [outcome] = post(db, UsageRecord(key_id, "m", 3, "r1"))
    assert (outcome.status, outcome.debited_micros, outcome.balance_micros) == ("debited", 2, 98)
    with db.reading() as session:
        row = session.scalars(select(WalletEntry).where(WalletEntry.kind == "usage")).one()
    assert (row.amount_micros, row.cost_micros, row.discount_percent) == (-2, 3, 50)


@pytest.mark.parametrize("value", [-1, 101, 12.5, "10", None])
def test_a_discount_outside_0_to_100_is_refused(db: Database, acme: NewOrg, value: object) -> None:
    with pytest.raises(InvalidValue) as refused, db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                         discount_percent=value)
    assert refused.value.context["field"] == "discount_percent"


def test_a_limit_below_the_spend_already_made_is_refused(db: Database, system: Actor, acme: NewOrg) -> None:
    key_id = key_of(db, acme, system)
    top_up(db, acme, 1000)
    post(db, UsageRecord(key_id, "m", 300, "r1"))
    for call, field in ((lambda s: wallet_controls.configure_wallet(s, owner(acme), acme.org.id, acme.default_team_id,
                                                                     spend_limit=299), "spend_limit_micros"),
                        (lambda s: wallet_controls.set_subject_limit(s, owner(acme), acme.org.id, acme.default_team_id,
                                                                      "key", key_id, 299), "limit_micros")):
        with pytest.raises(InvalidValue) as refused, db.transaction() as session:
            call(session)
        assert refused.value.context["field"] == field
    assert wallet(db, acme.default_team_id).spend_limit_micros is None


def test_a_limit_for_a_key_of_another_team_or_org_is_not_found(db: Database, system: Actor, acme: NewOrg) -> None:
    from identity import orgs

    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="o@rival.test")
        foreign = keys.create_api_key(session, system, rival.org.id, user_id=rival.owner.id,
                                      team_id=rival.default_team_id, name="k", scopes=["inference"]).id
    for subject, subject_id, field in (("key", foreign, "key_id"), ("member", rival.owner.id, "user_id"),
                                       ("key", "no-such-key", "key_id")):
        with pytest.raises(NotFound) as refused, db.transaction() as session:
            wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, subject,
                                              subject_id, 10)
        assert refused.value.context["field"] == field


def test_the_period_turns_with_the_billing_cycle(db: Database, system: Actor, acme: NewOrg) -> None:
    key_id = key_of(db, acme, system)
    top_up(db, acme, 10_000)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id, spend_limit=500)
    [first] = post(db, UsageRecord(key_id, "m", 500, "r1"))
    [refused] = post(db, UsageRecord(key_id, "m", 1, "r2"))
    assert (first.status, refused.status, refused.limit_scope) == ("debited", "spending_limit_reached", "team")
    with clock.frozen_at(first.resets_at + dt.timedelta(seconds=1)):
        [later] = post(db, UsageRecord(key_id, "m", 400, "r3"))
        assert later.status == "debited" and later.remaining_micros == 100
        with db.reading() as session:
            assert check_org(session, acme.org.id) == []
    assert wallet(db, acme.default_team_id).balance_micros == 10_000 - 900


def test_a_refusal_is_audited_once_and_a_top_up_lifts_it(db: Database, system: Actor, acme: NewOrg) -> None:
    key_id = key_of(db, acme, system)
    for n in range(3):
        assert post(db, UsageRecord(key_id, "m", 10, f"r{n}"))[0].status == "balance_exhausted"
    assert actions(db, acme.org.id).count("wallet.spend_refused") == 1
    assert wallet(db, acme.default_team_id).refusal == "balance_exhausted"
    top_up(db, acme, 10)
    assert wallet(db, acme.default_team_id).refusal is None
    assert post(db, UsageRecord(key_id, "m", 10, "r0"))[0].status == "debited"  # a refused id is not booked


def test_per_key_and_member_limits(db: Database, system: Actor, acme: NewOrg) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    first, second = key_of(db, acme, system, bob.id), key_of(db, acme, system, bob.id)
    top_up(db, acme, 10_000)
    with db.transaction() as session:
        wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, "key", first, 100)
        wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, "member",
                                          bob.id, 150)
    assert post(db, UsageRecord(first, "m", 100, "a"))[0].status == "debited"
    over = post(db, UsageRecord(first, "m", 1, "b"))[0]
    assert (over.status, over.limit_scope) == ("spending_limit_reached", "key")
    assert post(db, UsageRecord(second, "m", 50, "c"))[0].status == "debited"
    member = post(db, UsageRecord(second, "m", 1, "d"))[0]
    assert (member.status, member.limit_scope) == ("spending_limit_reached", "member")
    assert post(db, UsageRecord(key_of(db, acme, system), "m", 1, "e"))[0].status == "debited"  # the owner's key
    with db.reading() as session:
        assert check_org(session, acme.org.id) == []


def _with_auto_top_up(db: Database, system: Actor, acme: NewOrg, *, balance: int, threshold: int,
                      amount: int) -> str:
    """A key of the Default team, whose wallet holds `balance` and tops up `amount` below `threshold`."""
    key_id = key_of(db, acme, system)
    top_up(db, acme, balance)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": threshold, "amount_micros": amount})
    return key_id


def test_auto_top_up_raises_one_request_until_a_top_up_lands(db: Database, system: Actor, acme: NewOrg,
                                                             runner: CliRunner) -> None:
    key_id = _with_auto_top_up(db, system, acme, balance=1000, threshold=500, amount=2000)
    for n in range(6):
        post(db, UsageRecord(key_id, "m", 100, f"r{n}"))
    with db.reading() as session:
        found = session.scalars(select(TopUpRequest)).all()
    assert len(found) == 1 and found[0].status == "pending" and found[0].balance_micros == 400
    listed = runner.invoke(main, ["billing", "topups", "list"])  # no hook: the operator's outbox
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [found[0].id]
    top_up(db, acme, 2000, "auto")
    with db.reading() as session:
        assert session.get_one(TopUpRequest, found[0].id).status == "fulfilled"
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.topped_up")
                                .order_by(AuditEvent.seq.desc())).first()
    assert event is not None and event.changes["fulfilled_topup_request_id"] == found[0].id
    for n in range(6, 30):
        post(db, UsageRecord(key_id, "m", 100, f"r{n}"))
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(TopUpRequest)) == 2


def test_a_top_up_below_the_threshold_leaves_the_one_request_of_the_crossing(db: Database, system: Actor,
                                                                             acme: NewOrg) -> None:
    key_id = _with_auto_top_up(db, system, acme, balance=2_000, threshold=1_000, amount=5_000)
    sent: list[bytes] = []
    hook = ("https://pay.example/hook", "s3cret")
    post(db, UsageRecord(key_id, "m", 1_500, "r1"))  # 2000 -> 500: crosses the threshold
    assert topups.deliver(db, hook, system, post=lambda url, body, headers: sent.append(body))["delivered"] == 1
    top_up(db, acme, 100, "a manual top-up")  # 600: still below the threshold
    post(db, UsageRecord(key_id, "m", 10, "r2"))  # 590: the same crossing
    assert topups.deliver(db, hook, system, post=lambda url, body, headers: sent.append(body))["delivered"] == 0
    with db.reading() as session:
        [request] = session.scalars(select(TopUpRequest)).all()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.topped_up")
                                .order_by(AuditEvent.seq.desc())).first()
    assert len(sent) == 1 and request.status == "delivered"
    assert wallet(db, acme.default_team_id).pending_topup_id == request.id
    assert event is not None and event.changes["pending_topup_request_id"] == request.id
    top_up(db, acme, 100, request.id)  # naming the request, for less than it asks: not its payment (review s24)
    with db.reading() as session:
        assert session.get_one(TopUpRequest, request.id).status == "delivered"
    top_up(db, acme, 5_000, request.id)  # the request is paid (its id as the reference, what it asks): 5,690
    with db.reading() as session:
        assert session.get_one(TopUpRequest, request.id).status == "fulfilled"
    post(db, UsageRecord(key_id, "m", 4_800, "r3"))  # 890, below the threshold after the paid request: a new crossing
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(TopUpRequest)) == 2


def test_the_payment_hook_gets_a_signed_request_and_failures_are_retried(db: Database, system: Actor,
                                                                         acme: NewOrg) -> None:
    key_id = key_of(db, acme, system)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 500, "amount_micros": 2000})
    top_up(db, acme, 600)
    post(db, UsageRecord(key_id, "m", 200, "r1"))
    sent: list[tuple[bytes, dict[str, str]]] = []

    def down(url: str, body: bytes, headers: dict[str, str]) -> None:
        raise OSError("connection refused")

    assert topups.deliver(db, ("https://pay.example/hook", "s3cret"), system, post=down) == {"delivered": 0,
                                                                                           "failed": 1}
    assert topups.deliver(db, ("https://pay.example/hook", "s3cret"), system,
                          post=lambda url, body, headers: sent.append((body, headers))) == {"delivered": 0,
                                                                                           "failed": 0}
    with clock.frozen_at(clock.now() + topups.retry_after(1)):  # retried once its backoff is over
        assert topups.deliver(db, ("https://pay.example/hook", "s3cret"), system,
                              post=lambda url, body, headers: sent.append((body, headers))) == {"delivered": 1,
                                                                                               "failed": 0}
    assert topups.deliver(db, ("https://pay.example/hook", "s3cret"), system, post=down)["failed"] == 0
    body, headers = sent[0]
    stamp, mac = headers["X-Identity-Signature"].split(",")
    at = stamp.removeprefix("t=")
    assert mac == "v1=" + hmac.new(b"s3cret", f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    assert json.loads(body)["amount_micros"] == 2000
    assert actions(db, acme.org.id)[-2:] == ["wallet.topup_failed", "wallet.topup_delivered"]


def test_deleting_a_team_cancels_its_undelivered_top_up_and_records_its_balance(db: Database, system: Actor,
                                                                               acme: NewOrg) -> None:
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id, "admin")
        key_id = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=team.id,
                                     name="k", scopes=["inference"]).id
        wallets.top_up(session, owner(acme), acme.org.id, team.id, 2_000, "inv 1")
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, team.id,
                                         auto_topup={"threshold_micros": 1_000, "amount_micros": 5_000})
    post(db, UsageRecord(key_id, "m", 1_500, "r1"))  # 500: a pending request for the team
    with db.transaction() as session:
        team_deletion.delete_team(session, owner(acme), acme.org.id, team.id)
    sent: list[bytes] = []
    assert topups.deliver(db, ("https://pay.example/hook", "s3cret"), system,
                          post=lambda url, body, headers: sent.append(body)) == {"delivered": 0, "failed": 0}
    with db.reading() as session:
        [request] = session.scalars(select(TopUpRequest)).all()
        deleted = session.scalars(select(AuditEvent).where(AuditEvent.action == "team.deleted")).one()
    assert sent == [] and request.status == "cancelled"
    assert deleted.changes["balance_micros"] == 500
    assert actions(db, acme.org.id)[-2:] == ["wallet.topup_cancelled", "team.deleted"]


def test_seat_usage_is_granted_once_per_cycle_by_billing_renew(db: Database, system: Actor, acme: NewOrg,
                                                               runner: CliRunner) -> None:
    provision(db, system, acme.org.id, "m@acme.test", role="member")
    with db.transaction() as session:
        wallet_controls.set_settings(session, owner(acme), acme.org.id, seat_usage_micros=1_000)
    for _ in range(2):
        result = runner.invoke(main, ["billing", "renew", "--org", acme.org.slug])
        assert result.exit_code == 0, result.output
    assert wallet(db, acme.default_team_id).balance_micros == 2_000  # two seated members, once
    assert runner.invoke(main, ["billing", "check", "--org", acme.org.slug]).exit_code == 0


def test_a_seat_grant_near_the_largest_balance_is_capped_and_says_so(db: Database, system: Actor,
                                                                     acme: NewOrg) -> None:
    """Refused, it would stop the org's seat renewal (and so every provisioning); credited past
    MAX_TOTAL, the balance would leave its bound: it credits the room left, and its entry and event say so."""
    provision(db, system, acme.org.id, "m@acme.test", role="member")
    top_up(db, acme, 1_000)
    with db.transaction() as session:
        wallet_controls.set_settings(session, owner(acme), acme.org.id, seat_usage_micros=1_000)
        session.get_one(Wallet, acme.default_team_id).balance_micros = wallets.MAX_TOTAL - 10  # the bound, set
    with db.transaction() as session:
        [entry] = wallets.grant_seat_usage(session, system, acme.org.id)
    assert entry.amount_micros == 10 and "capped from 2000" in (entry.reference or "")
    assert wallet(db, acme.default_team_id).balance_micros == wallets.MAX_TOTAL
    with db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.credited")
                                .order_by(AuditEvent.id.desc())).first()
    assert event is not None and event.changes["capped_from_micros"] == 2_000 and event.changes["amount_micros"] == 10


def test_an_owner_deletes_a_team_whose_top_up_the_hook_holds_only_after_cancelling_it(db: Database, system: Actor,
                                                                                      acme: NewOrg) -> None:
    """Its payment, after the deletion, would find no team: the charge would be credited nowhere."""
    with db.transaction() as session:
        research = teams.create_team(session, system, acme.org.id, "Research").id
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, research,
                                         auto_topup={"threshold_micros": 1_000, "amount_micros": 5_000})
    assert topups.deliver(db, ("https://pay.example/hook", "s"), system, post=lambda u, b, h: None)["delivered"] == 1
    with db.reading() as session:
        [request] = session.scalars(select(TopUpRequest)).all()
    with pytest.raises(Conflict) as refused, db.transaction() as session:
        team_deletion.delete_team(session, owner(acme), acme.org.id, research, confirm="Research")
    assert refused.value.context["topup_request_ids"] == [request.id]
    with db.transaction() as session:
        topups.cancel_request(session, owner(acme), acme.org.id, research, request.id)
    with db.transaction() as session:
        team_deletion.delete_team(session, owner(acme), acme.org.id, research, confirm="Research")
    with db.reading() as session:
        assert session.get_one(TopUpRequest, request.id).status == "cancelled"
    assert actions(db, acme.org.id)[-1] == "team.deleted"


@pytest.mark.parametrize("change", [None, {"threshold_micros": 1_000, "amount_micros": 9_000}])
def test_a_request_left_to_the_hook_while_its_post_was_in_flight_is_withdrawn_when_the_post_fails(
        db: Database, system: Actor, acme: NewOrg, change: dict[str, int] | None) -> None:
    """The owner turned auto top-up off (or changed it) while the request's POST was in flight: it was
    left to the hook then (the hook may have charged it); the POST failed, so it is withdrawn, never
    retried for what the owner no longer wants, and a changed auto top-up raises its own."""
    key_id = _with_auto_top_up(db, system, acme, balance=2_000, threshold=1_000, amount=5_000)
    post(db, UsageRecord(key_id, "m", 1_500, "r1"))
    asked: list[int] = []

    def failing_while_changed(url: str, body: bytes, headers: dict[str, str]) -> None:
        asked.append(json.loads(body)["amount_micros"])
        if len(asked) == 1:
            with db.transaction() as session:
                wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                                 auto_topup=change)
        raise OSError("the hook is down")

    topups.deliver(db, ("https://pay.example/hook", "s"), system, post=failing_while_changed)
    topups.deliver(db, ("https://pay.example/hook", "s"), system, post=failing_while_changed)
    with db.reading() as session:
        statuses = [r.status for r in session.scalars(select(TopUpRequest).order_by(TopUpRequest.created_at))]
    assert asked == ([5_000] if change is None else [5_000, 9_000])
    assert statuses == (["cancelled"] if change is None else ["cancelled", "failed"])


def test_billing_check_finds_a_balance_that_is_not_its_ledgers_sum(db: Database, acme: NewOrg,
                                                                   runner: CliRunner) -> None:
    top_up(db, acme, 1000)
    with db.begin() as conn:
        conn.execute(Wallet.__table__.update().values(balance_micros=999))
    result = runner.invoke(main, ["billing", "check", "--org", acme.org.slug])
    assert result.exit_code == 1 and "ledger sums to 1000" in result.output


@given(moments=st.lists(st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 31),
                                     timezones=st.just(dt.UTC)), min_size=1, max_size=30),
       anchor_day=st.integers(1, 31))
def test_the_period_kept_per_org_is_always_the_cycle(moments: list[dt.datetime], anchor_day: int) -> None:
    """Asked in any order (the clock of several requests), the kept period is never stale."""
    anchor = dt.datetime(2026, 1, anchor_day, 13, 30, tzinfo=dt.UTC)
    for moment in [*moments, *sorted(moments), *sorted(moments, reverse=True)]:
        assert wallet_periods.period_at(anchor, moment) == cycle_at(anchor, moment)
