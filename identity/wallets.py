"""Team wallets (DESIGN.md 3.8): a balance in integer micro-cents, its ledger, credits and controls.

Every change to a wallet happens under its row lock (`FOR UPDATE` on PostgreSQL; on SQLite every
write transaction holds the database's write lock from BEGIN IMMEDIATE), so the balance, the
period's spend and the ledger move together. Money is `int` throughout: amounts arrive as JSON
integers and are refused otherwise (a float, a bool, a string), never converted.

Audit: each credit (top-up, refund, adjustment, seat grant) and each change of a control is its own
event. Usage debits are not: identity.usage writes one `wallet.usage_recorded` event per org per
call, naming the rows it summarises (see there for why).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity.actions import Action
from identity.errors import AmountOutOfRange, Conflict, InvalidValue, PermissionDenied
from identity.lookups import get_team
from identity.models import Org, RoleGrant, User
from identity.roles import authorize
from identity.vocabulary import Role
from identity.wallet_locks import LOCK as LOCK
from identity.wallet_locks import LOCK_MANY as LOCK_MANY
from identity.wallet_locks import MOVABLE as MOVABLE
from identity.wallet_locks import ORGS as ORGS
from identity.wallet_locks import SAVE_WALLET as SAVE_WALLET
from identity.wallet_locks import TEAM_KEY_SHARE as TEAM_KEY_SHARE
from identity.wallet_locks import WALLETS as WALLETS
from identity.wallet_locks import Locked as Locked
from identity.wallet_locks import W as W
from identity.wallet_locks import WalletRow as WalletRow
from identity.wallet_locks import ensure_wallet as ensure_wallet
from identity.wallet_locks import lock_wallet as lock_wallet
from identity.wallet_locks import lock_wallets as lock_wallets
from identity.wallet_locks import locked_rows as locked_rows
from identity.wallet_locks import moved_wallets as moved_wallets
from identity.wallet_locks import roll_period as roll_period
from identity.wallet_locks import save_wallets as save_wallets
from identity.wallet_locks import saved as saved
from identity.wallet_locks import saving as saving
from identity.wallet_models import TopUpRequest, Wallet, WalletEntry, WalletSettings
from identity.wallet_periods import BALANCE_EXHAUSTED, period_at

MICROS_PER_CENT = 1_000_000
# The largest amount any one call may move: 10^15 micro-cents, $10 million. Larger is a typo or an
# attack, and keeps every sum far inside BIGINT.
MAX_AMOUNT = 10**15
# The largest any running money total may reach: a wallet's balance, its period's spend and cost, and
# so every key's and member's usage totals of the period (each at most its team's). 2^62 micro-cents
# ($46 billion), half of BIGINT: a sum of two totals (a report's) stays inside it too. A credit or a
# debit that would take a total past it is refused, under the wallet's lock, nothing written.
MAX_TOTAL = 2**62
TOP_UP, SEAT_GRANT, REFUND, ADJUSTMENT, USAGE = "top_up", "seat_grant", "refund", "adjustment", "usage"
CREDIT_KINDS = (TOP_UP, SEAT_GRANT, REFUND, ADJUSTMENT)
ONCE_PER_REFERENCE = (TOP_UP, REFUND, ADJUSTMENT)  # a seat grant is once per team and cycle (its own key)
ENTRIES = cast(Table, WalletEntry.__table__)
REQUEST_ID_LENGTH = 200  # wallet_entries.request_id
INSERT_ENTRY = insert(ENTRIES)
# A top-up request's states that identity.topups has still to hand to the payment hook, and a withdrawn one's.
UNDELIVERED_TOPUP, TOPUP_CANCELLED = ("pending", "failed"), "cancelled"


def amount(value: Any, field: str, *, signed: bool = False, zero: bool = False) -> int:
    """Return `value` as an amount of micro-cents: a JSON integer, 1 to MAX_AMOUNT (or its negative
    when `signed`; or 0 too when `zero`: a spending limit, where 0 stops a team, key or member that
    has not spent yet). Anything else is refused naming `field`, never coerced."""
    if type(value) is not int:
        raise InvalidValue(f"{field} must be an integer number of micro-cents", field=field)
    if (value == 0 and not zero) or (value < 0 and not signed):
        raise InvalidValue(f"{field} must be {'non-zero' if signed else 'zero or more' if zero else 'positive'}",
                           field=field)
    if abs(value) > MAX_AMOUNT:
        raise InvalidValue(f"{field} must be at most {MAX_AMOUNT} micro-cents ($10,000,000)", field=field)
    return value


def within_total(total: int, field: str) -> None:
    """Refuse (AmountOutOfRange, naming `field`) a running total that would pass MAX_TOTAL."""
    if total > MAX_TOTAL:
        raise AmountOutOfRange(f"{field} would pass the largest total a wallet keeps ({MAX_TOTAL} micro-cents)",
                               field=field, max_total_micros=MAX_TOTAL)


def percent(value: Any, field: str = "discount_percent") -> int:
    """Return a whole percentage 0 to 100 (a JSON integer), or refuse it naming `field`."""
    if type(value) is not int or not 0 <= value <= 100:
        raise InvalidValue(f"{field} must be a whole number from 0 to 100", field=field)
    return value




def team_target(team_id: str) -> Target:
    return Target("team", team_id, team_id)


def settings_of(session: Session, org_id: str) -> WalletSettings:
    """Return the org's wallet settings (defaults when never set; not added to the session)."""
    found = session.get(WalletSettings, org_id)
    return found or WalletSettings(org_id=org_id, admins_may_top_up=False, seat_usage_micros=0)


def _authorize_top_up(session: Session, actor: Actor, org_id: str) -> None:
    """Owners top up; admins too when the org's wallet setting `admins_may_top_up` says so (DESIGN 3.2)."""
    authorize(actor, "wallets.top_up", org_id=org_id)
    if actor.role == Role.ADMIN and not settings_of(session, org_id).admins_may_top_up:
        raise PermissionDenied("only an owner may top up (the org has not allowed admins to: admins_may_top_up)",
                               action="wallets.top_up")


def may_top_up(session: Session, actor: Actor, org_id: str) -> bool:
    """Tell whether `actor` may top up the org's wallets (the rule top_up asks), for the console's buttons."""
    try:
        _authorize_top_up(session, actor, org_id)
    except PermissionDenied:
        return False
    return True


def top_up(session: Session, actor: Actor, org_id: str, team_id: str, micros: Any, reference: Any) -> WalletEntry:
    """Credit the team's wallet with `micros` paid under `reference` (an invoice, a payment id), once
    per reference and team (a second one is a Conflict naming `reference`); a reference naming one of
    the team's top-up requests for less than it asks is once too, apart from that request's payment."""
    _authorize_top_up(session, actor, org_id)
    get_team(session, org_id, team_id)  # another org's team is not found before its input is read
    micros, reference = amount(micros, "amount_micros"), _reference(reference)
    key = _reference_key(TOP_UP, team_id, reference)
    if not _pays(session, team_id, reference, micros) and _asked(session, team_id, reference) is not None:
        # Less than the request it names asks: not its payment (identity.wallets._fulfil_pending), so
        # the payment of it, which the hook may still make under the same reference, is credited once too.
        key = f"{TOP_UP}:{team_id}:part:{reference}"
    return _credit(session, actor, org_id, team_id, TOP_UP, micros, reference, request_id=key)


def _asked(session: Session, team_id: str, reference: str) -> int | None:
    """What the team's top-up request named by `reference` (its id) asks for, or None when it names none."""
    return session.scalar(select(TopUpRequest.amount_micros).where(TopUpRequest.id == reference,
                                                                   TopUpRequest.team_id == team_id))


def _pays(session: Session, team_id: str, reference: str, micros: int) -> bool:
    """Whether a top-up of `micros` under `reference` pays the team's request it names: at least what it asks."""
    asked = _asked(session, team_id, reference)
    return asked is not None and micros >= asked


def add_credit(session: Session, actor: Actor, org_id: str, team_id: str, kind: Any, micros: Any,
               reference: Any) -> WalletEntry:
    """Write a refund (positive) or an adjustment (either sign) by an owner, with its reason: once per
    reference, team and kind, as a top-up (a retry is a Conflict naming `reference`)."""
    authorize(actor, "wallets.manage", org_id=org_id)
    get_team(session, org_id, team_id)
    if kind not in (REFUND, ADJUSTMENT):
        raise InvalidValue("kind must be refund or adjustment", field="kind")
    micros, reference = amount(micros, "amount_micros", signed=kind == ADJUSTMENT), _reference(reference)
    return _credit(session, actor, org_id, team_id, kind, micros, reference,
                   request_id=_reference_key(kind, team_id, reference))


def _reference_key(kind: str, team_id: str, reference: str) -> str:
    """The ledger row's idempotency key of a credit named by `reference`: the reference kept whole, or
    (too long for the key) by its SHA-256."""
    key = f"{kind}:{team_id}:{reference}"
    if len(key) > REQUEST_ID_LENGTH:
        key = f"{kind}:{team_id}:sha256:{hashlib.sha256(reference.encode()).hexdigest()}"
    return key


def _reference(reference: Any) -> str:
    if not isinstance(reference, str) or not reference.strip() or len(reference) > 200:
        raise InvalidValue("reference is required: up to 200 characters naming the payment or reason",
                           field="reference")
    return reference.strip()


def _credit(session: Session, actor: Actor, org_id: str, team_id: str, kind: str, micros: int, reference: str,
           *, request_id: str | None = None) -> WalletEntry:
    """Add a ledger row of `kind` and move the balance (authorized by the caller); audited."""
    locked = lock_wallet(session, org_id, team_id)
    wallet = locked.wallet
    # The reference names the payment (or the refund's, the adjustment's reason): a retry must not
    # credit it twice. Checked on its idempotency key (the reference whole, or its SHA-256: two long
    # references alike but for their ends are two payments), under the lock: a credit with the same
    # key committed while this one waited for it is seen (each statement reads what was committed
    # before it began), so two at once are one credit and a 409.
    if kind in ONCE_PER_REFERENCE and session.scalar(select(func.count()).where(
            WalletEntry.team_id == team_id, WalletEntry.kind == kind, WalletEntry.request_id == request_id)):
        raise Conflict(f"a {kind.replace('_', '-')} with reference {reference!r} was already credited to this "
                       "team", field="reference")
    if wallet.balance_micros + micros < 0:
        raise InvalidValue(f"the adjustment would take the balance below zero ({wallet.balance_micros})",
                           field="amount_micros")
    asked = micros
    if kind == SEAT_GRANT:
        micros, reference = _seat_grant_within_total(wallet, micros, reference)
    within_total(wallet.balance_micros + micros, "balance_micros")
    entry = _write_entry(session, actor, wallet, kind, micros, locked.period_start, reference=reference,
                         request_id=request_id)
    before = wallet.balance_micros
    wallet.balance_micros += micros
    wallet.updated_at = clock.now()
    if micros > 0 and wallet.refusal == BALANCE_EXHAUSTED:
        wallet.refusal, wallet.refused_period_start = None, None
    changes: dict[str, Any] = {"entry_id": entry.id, "kind": kind, "amount_micros": micros, "reference": reference,
                               "balance_micros": {"before": before, "after": wallet.balance_micros}}
    if micros != asked:
        changes["capped_from_micros"] = asked  # a seat grant held at MAX_TOTAL (_seat_grant_within_total)
    if kind == TOP_UP and wallet.pending_topup_id:
        fulfilled = _fulfil_pending(session, wallet, reference, micros)
        if fulfilled:
            changes["fulfilled_topup_request_id"] = fulfilled  # the auto top-up's request it answers
        else:
            changes["pending_topup_request_id"] = wallet.pending_topup_id  # still below: the same crossing's
    elif micros > 0 and wallet.pending_topup_id and _restored(wallet):
        # A refund, an adjustment or a seat grant paid nothing: the request is not fulfilled, it is no
        # longer needed. Withdrawn unless the hook has it already (its payment then fulfils it).
        withdrawn = withdraw_undelivered(session, actor, wallet, "balance_restored")
        if withdrawn:
            changes["cancelled_topup_request_ids"] = withdrawn
    record(session, actor, Action.WALLET_TOPPED_UP if kind == TOP_UP else Action.WALLET_CREDITED,
           team_target(team_id), changes, org_id=org_id)
    return entry


def _write_entry(session: Session, actor: Actor, wallet: Wallet, kind: str, micros: int, period_start: dt.datetime,
                 **more: Any) -> WalletEntry:
    entry = WalletEntry(org_id=wallet.org_id, team_id=wallet.team_id, kind=kind, amount_micros=micros,
                        period_start=period_start, actor_type=actor.type, actor_id=actor.id[:80],
                        created_at=clock.now(), **more)
    session.add(entry)
    session.flush()
    return entry


def grant_seat_usage(session: Session, actor: Actor, org_id: str,
                     cycles: Sequence[dt.datetime] | None = None) -> list[WalletEntry]:
    """Credit each team with its seated members' included usage for each cycle starting at `cycles`
    (default: the current billing cycle): at most what takes its balance to MAX_TOTAL, never refused
    (`_seat_grant_within_total`).

    Renewal grants each cycle it charges (identity.seats.renew_if_due, lazily or from cron); `identity
    billing renew` also grants the current one (the first cycle, or a setting turned on mid-cycle). Once
    per team and cycle: the ledger row's idempotency key is `seat_grant:<team>:<cycle start>`. Nothing is
    written while the org's `seat_usage_micros` is 0.
    """
    per_seat = settings_of(session, org_id).seat_usage_micros
    if not per_seat:
        return []
    if cycles is None:
        cycles = [period_at(session.get_one(Org, org_id).created_at, clock.now())[0]]
    seated_by_team = seated_members_by_team(session, org_id)
    entries = []
    for cycle_start in cycles:
        for team_id, seated in seated_by_team.items():
            key = f"seat_grant:{team_id}:{cycle_start.isoformat()}"
            if seated and session.scalar(select(func.count()).where(WalletEntry.request_id == key)) == 0:
                entries.append(_credit(session, actor, org_id, team_id, SEAT_GRANT, min(seated * per_seat, MAX_AMOUNT),
                                      f"{seated} seats x {per_seat} for the cycle from {cycle_start.isoformat()}",
                                      request_id=key))
    return entries


def _seat_grant_within_total(wallet: Wallet, micros: int, reference: str) -> tuple[int, str]:
    """The seat grant of `micros` the locked wallet can take, at most MAX_TOTAL - its balance, and its
    ledger reference (saying so when capped).

    Not refused, as a payment past the bound is: the grant is written inside the seat renewal
    (identity.seats.renew_if_due), which every take_seat and release_seat runs first, so refusing one
    team's grant would stop the org's renewal, provisioning and deprovisioning. A balance already at
    the bound gets a grant of 0, still written: the cycle's grant, once, as its key says."""
    room = MAX_TOTAL - wallet.balance_micros
    if micros <= room:
        return micros, reference
    return room, f"{reference}, capped from {micros} at the largest balance"[:REQUEST_ID_LENGTH]


def _restored(wallet: Wallet) -> bool:
    """Whether the balance is back at or above the auto top-up's threshold (or there is none now)."""
    threshold = wallet.auto_topup_threshold_micros
    return threshold is None or wallet.balance_micros >= threshold


def _fulfil_pending(session: Session, wallet: Wallet, reference: str, micros: int) -> str | None:
    """Fulfil the auto top-up's pending request when this top-up answers it; return its id, or None.

    One crossing of the threshold raises one request (DESIGN 3.8), so it stays pending until the
    balance is back at or above the threshold, or until the top-up pays it (its `reference` is the
    request's id: how the payer names the request it paid; for at least what the request asks, `_pays`:
    a smaller one naming it is not its payment, which may still come). A smaller top-up leaves it pending: the
    next debit below the threshold raises no second request, and the hook, which may be charging for
    the first, is not asked again. Only then may the next crossing raise one.
    """
    pending = wallet.pending_topup_id
    if pending is None or not (_restored(wallet) or (
            reference == pending and _pays(session, wallet.team_id, reference, micros))):
        return None
    session.execute(update(TopUpRequest).where(TopUpRequest.id == pending)
                    .values(status="fulfilled", fulfilled_at=clock.now(), claimed_until=None))
    wallet.pending_topup_id = None
    return pending


def withdraw_undelivered(session: Session, actor: Actor, wallet: Wallet, reason: str, *,
                         only: str | None = None) -> list[str]:
    """Cancel the team's top-up requests not yet handed to the payment hook (pending, or failed and to
    be retried) and not being handed to it now, each audited (`wallet.topup_cancelled` with `reason`);
    forget the wallet's pending request when it was one of them, so the next crossing of the threshold
    may raise one. Return their ids. `only`: that request alone (identity.topups, after its failed POST).

    Under the wallet's lock (the caller's), as every change of its pending request is. A request
    already delivered is the hook's now (it may be charging): it stays, and its payment fulfils it.
    So does one claimed by a sender (identity.topups.deliver: `claimed_until` in the future), whose POST
    may be in flight: cancelled under it, the hook would charge for a cancelled request, and (the
    wallet's pending request forgotten) the next debit or change would raise a second charge for one
    crossing. It stays pending in the wallet; the sender marks it delivered or failed. One UPDATE whose
    WHERE is the rule: PostgreSQL checks it again on the row a claim just committed, SQLite's writers
    take turns, so a claim and a withdrawal never both win.
    """
    now = clock.now()
    seen = {request_id: status for request_id, status in session.execute(
        select(TopUpRequest.id, TopUpRequest.status).where(
            TopUpRequest.team_id == wallet.team_id, TopUpRequest.status.in_(UNDELIVERED_TOPUP),
        *([TopUpRequest.id == only] if only is not None else []))
        .order_by(TopUpRequest.created_at))}
    if not seen:
        return []
    cancelled = {request_id: asked for request_id, asked in session.execute(update(TopUpRequest).where(
        TopUpRequest.id.in_(list(seen)), TopUpRequest.status.in_(UNDELIVERED_TOPUP),
        TopUpRequest.claimed_until.is_(None) | (TopUpRequest.claimed_until <= now))
        .values(status=TOPUP_CANCELLED, claimed_until=None)
        .returning(TopUpRequest.id, TopUpRequest.amount_micros)
        .execution_options(synchronize_session="fetch"))}
    withdrawn = [request_id for request_id in seen if request_id in cancelled]  # oldest first
    for request_id in withdrawn:
        record(session, actor, Action.WALLET_TOPUP_CANCELLED, team_target(wallet.team_id),
               {"request_id": request_id, "amount_micros": cancelled[request_id], "reason": reason,
                "status": {"before": seen[request_id], "after": TOPUP_CANCELLED}}, org_id=wallet.org_id)
    if wallet.pending_topup_id in withdrawn:
        wallet.pending_topup_id = None
    return withdrawn


def seated_members_by_team(session: Session, org_id: str) -> dict[str, int]:
    """Return, per team of the org, how many of its members hold a seat (a member counts once per team)."""
    rows = session.execute(select(RoleGrant.team_id, func.count(func.distinct(RoleGrant.user_id)))
                           .join(User, User.id == RoleGrant.user_id)
                           .where(RoleGrant.org_id == org_id, RoleGrant.team_id.is_not(None), User.has_seat.is_(True))
                           .group_by(RoleGrant.team_id))
    return {str(team_id): int(count) for team_id, count in rows}


def new_id() -> str:
    return str(uuid.uuid4())
