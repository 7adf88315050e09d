"""A wallet's controls (DESIGN.md 3.8): spending limits per period (team, key, member), the team's
discount, its auto top-up, and the org's wallet settings. Owners only (DESIGN 3.2: "wallets'
top-ups and limits"); each change is audited with its before and after, under the wallet's lock.

A limit below what was already spent in the period is refused: it could never be honoured
(the spend is booked), and a caller who meant "stop now" sets the limit to the spend itself.
Raising a limit (or removing it) above the spend lifts a `spending_limit_reached` refusal at once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import topups
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound
from identity.lookups import get_team, get_user
from identity.models import ApiKey, RoleGrant
from identity.roles import authorize
from identity.wallet_models import SpendLimit, Wallet, WalletEntry, WalletSettings
from identity.wallet_periods import SPENDING_LIMIT_REACHED
from identity.wallets import (
    MAX_AMOUNT,
    USAGE,
    Locked,
    amount,
    lock_wallet,
    new_id,
    percent,
    settings_of,
    team_target,
    withdraw_undelivered,
)

UNSET: Any = object()
AUTO_TOPUP = ("auto_topup_threshold_micros", "auto_topup_amount_micros")
KEY, MEMBER = "key", "member"


def _limit(value: Any, field: str) -> int | None:
    """A spending limit (team, key or member): None (no limit) or 0 to MAX_AMOUNT. 0 is a limit: at the
    start of a period the spend is 0, and "stop now" is the limit equal to the spend (above)."""
    return None if value is None else amount(value, field, zero=True)


def configure_wallet(session: Session, actor: Actor, org_id: str, team_id: str, *, spend_limit: Any = UNSET,
                     discount_percent: Any = UNSET, auto_topup: Any = UNSET) -> Wallet:
    """Change the team's period limit (None: no limit), discount, or auto top-up (None: off).

    `auto_topup` is `{"threshold_micros": int, "amount_micros": int}`. Everything is checked before
    anything changes: a refused change writes nothing.
    """
    authorize(actor, "wallets.manage", org_id=org_id)
    get_team(session, org_id, team_id)  # another org's team is not found before its input is read
    changes: dict[str, Any] = {}
    if spend_limit is not UNSET:
        changes["spend_limit_micros"] = _limit(spend_limit, "spend_limit_micros")
    if discount_percent is not UNSET:
        changes["discount_percent"] = percent(discount_percent)
    if auto_topup is not UNSET:
        threshold, top = _auto_topup(auto_topup)
        changes[AUTO_TOPUP[0]], changes[AUTO_TOPUP[1]] = threshold, top
    locked = lock_wallet(session, org_id, team_id)  # NotFound first: another org's team is never told more
    if not changes:
        raise InvalidValue("nothing to change: spend_limit_micros, discount_percent or auto_topup")
    wallet = locked.wallet
    limit = changes.get("spend_limit_micros", UNSET)
    if limit is not UNSET and limit is not None and limit < wallet.period_spend_micros:
        raise InvalidValue(f"spend_limit_micros {limit} is below this period's spend {wallet.period_spend_micros}",
                           field="spend_limit_micros", period_spend_micros=wallet.period_spend_micros)
    before = {name: getattr(wallet, name) for name in changes}
    for name, value in changes.items():
        setattr(wallet, name, value)
    if limit is not UNSET and wallet.refusal == SPENDING_LIMIT_REACHED and (
            limit is None or limit > wallet.period_spend_micros):
        wallet.refusal, wallet.refused_period_start = None, None
    if any(before[name] != changes[name] for name in AUTO_TOPUP if name in changes):
        # The undelivered request asks for what the owner no longer wants (nothing, or another amount
        # at another threshold): the hook must not charge for it.
        withdraw_undelivered(session, actor, wallet, "auto_topup_off" if changes[AUTO_TOPUP[0]] is None
                             else "auto_topup_changed")
    wallet.updated_at = clock.now()
    record(session, actor, Action.WALLET_SETTINGS_CHANGED, team_target(team_id),
           {name: {"before": before[name], "after": value} for name, value in changes.items()}, org_id=org_id)
    if AUTO_TOPUP[0] in changes:
        # Only a debit asked before; a team already below the threshold is refused by the key check,
        # so no debit may ever come: the request is raised now (the hook gets it from the CLI's delivery).
        topups.request_if_due(session, actor, wallet)
    return wallet


def _auto_topup(value: Any) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) != {"threshold_micros", "amount_micros"}:
        raise InvalidValue("auto_topup must be null or {threshold_micros, amount_micros}", field="auto_topup")
    return (amount(value["threshold_micros"], "auto_topup.threshold_micros"),
            amount(value["amount_micros"], "auto_topup.amount_micros"))


def _subject(session: Session, org_id: str, team_id: str, subject_type: str, subject_id: str) -> None:
    """Refuse (404) a key that is not of this team, or a member who is not in it (another org's included)."""
    if subject_type == KEY:
        key = session.get(ApiKey, subject_id) if isinstance(subject_id, str) and len(subject_id) <= 36 else None
        if key is None or key.org_id != org_id or key.team_id != team_id:
            raise NotFound(f"no key {subject_id!r} in team {team_id!r}", field="key_id")
        if key.rotated_to is not None:  # its limit went to its successor (pass_key_limit)
            raise Conflict("this key was rotated: set the limit of its successor", field="key_id",
                           rotated_to=key.rotated_to)
        return
    if subject_type != MEMBER:
        raise InvalidValue("subject must be key or member", field="subject_type")
    try:
        get_user(session, org_id, subject_id)
    except NotFound:
        raise NotFound(f"no member {subject_id!r} in this org", field="user_id") from None
    in_team = session.scalar(select(func.count()).where(RoleGrant.user_id == subject_id, RoleGrant.team_id == team_id))
    if not in_team:
        raise NotFound(f"member {subject_id!r} is not in team {team_id!r}", field="user_id")


def spent_by(session: Session, locked: Locked[Wallet], subject_type: str, subject_id: str) -> int:
    """Return what a key or member spent in the team this period, from the ledger."""
    column = WalletEntry.key_id if subject_type == KEY else WalletEntry.user_id
    spent = session.scalar(select(func.coalesce(func.sum(WalletEntry.amount_micros), 0)).where(
        WalletEntry.team_id == locked.wallet.team_id, WalletEntry.period_start == locked.period_start,
        WalletEntry.kind == USAGE, column == subject_id))
    return -int(spent or 0)


def set_subject_limit(session: Session, actor: Actor, org_id: str, team_id: str, subject_type: str,
                      subject_id: str, limit: Any) -> SpendLimit | None:
    """Set (or with None remove) the period limit of one key or member of the team."""
    authorize(actor, "wallets.manage", org_id=org_id)
    get_team(session, org_id, team_id)
    field = "key_id" if subject_type == KEY else "user_id"
    value = _limit(limit, "limit_micros")
    _subject(session, org_id, team_id, subject_type, subject_id)
    locked = lock_wallet(session, org_id, team_id)
    found = session.scalars(select(SpendLimit).where(
        SpendLimit.team_id == team_id, SpendLimit.subject_type == subject_type,
        SpendLimit.subject_id == subject_id)).first()
    spent = spent_by(session, locked, subject_type, subject_id)
    if found is not None and found.period_start == locked.period_start:
        spent = max(spent, found.spend_micros)  # a rotated key's spend, carried with its limit, is not its ledger's
    if value is not None and value < spent:
        raise InvalidValue(f"limit_micros {value} is below this period's spend {spent}", field="limit_micros",
                           period_spend_micros=spent)
    before = found.limit_micros if found else None
    if value is None:
        if found is not None:
            session.delete(found)
        row = None
    else:
        row = found or SpendLimit(id=new_id(), org_id=org_id, team_id=team_id, subject_type=subject_type,
                                  subject_id=subject_id, created_at=clock.now())
        row.limit_micros, row.period_start, row.spend_micros = value, locked.period_start, spent
        if value > spent:
            row.refused_period_start = None
        session.add(row)
        locked.wallet.has_subject_limits = True  # under the lock: a debit waiting on it reads the limits
    record(session, actor, Action.WALLET_LIMIT_SET, Target(subject_type, subject_id, subject_id),
           {"team_id": team_id, field: subject_id, "limit_micros": {"before": before, "after": value}},
           org_id=org_id)
    return row


def rotation_held(session: Session, org_id: str, key_ids: Collection[str]) -> set[str]:
    """Return those of `key_ids` that may not be rotated now, in one query: they have a spending limit
    and a predecessor of theirs is still in its grace period (pass_key_limit refuses them, 409).
    The rotation asks it, and so does a page before it offers Rotate."""
    if not key_ids:
        return set()
    limited = select(SpendLimit.subject_id).where(SpendLimit.org_id == org_id, SpendLimit.subject_type == KEY,
                                                  SpendLimit.subject_id.in_(sorted(key_ids)))
    return {key_id for key_id in session.scalars(select(ApiKey.rotated_to).where(
        ApiKey.org_id == org_id, ApiKey.rotated_to.in_(limited), ApiKey.expires_at > clock.now())) if key_id}


def pass_key_limit(session: Session, org_id: str, team_id: str, old_key_id: str,
                   new_key_id: str) -> dict[str, Any] | None:
    """Move a rotated key's spending limit to its successor, with its spend this period and any refusal
    in force; return what moved (for the rotation's event), or None when the key had no limit.

    Limits are the owner's (DESIGN 3.2) and a key refused at its limit stays refused until the limit
    rises or the period turns (3.8): rotating, which an admin may do, lifts neither. The key and its
    successor share the one row: the old key spends against it for its grace period (it names the
    successor in `rotated_to`, which the debit and the key check follow one step). So a key whose own
    predecessor is still in its grace is not rotated while it has a limit: that predecessor would be
    left two steps behind the row. Under the wallet's lock, as every debit and change of a limit.
    """
    subject = (SpendLimit.team_id == team_id, SpendLimit.subject_type == KEY, SpendLimit.subject_id == old_key_id)
    if session.scalar(select(SpendLimit.id).where(*subject)) is None:
        return None
    if rotation_held(session, org_id, [old_key_id]):
        raise Conflict("this key has a spending limit and its predecessor is still in its grace period: revoke "
                       "the predecessor, or rotate after its grace ends", key_id=old_key_id)
    locked = lock_wallet(session, org_id, team_id)
    found = session.scalars(select(SpendLimit).where(*subject).execution_options(populate_existing=True)).one()
    if found.period_start != locked.period_start:
        found.period_start, found.spend_micros = locked.period_start, 0
    found.subject_id = new_key_id
    return {"limit_micros": found.limit_micros, "spend_micros": found.spend_micros,
            "refused": found.refused_period_start == locked.period_start}


def set_settings(session: Session, actor: Actor, org_id: str, *, admins_may_top_up: Any = UNSET,
                 seat_usage_micros: Any = UNSET) -> WalletSettings:
    """Change the org's wallet settings (owners): admins' top-ups, the usage each seat brings per cycle."""
    authorize(actor, "wallets.manage", org_id=org_id)
    changes: dict[str, Any] = {}
    if admins_may_top_up is not UNSET:
        if type(admins_may_top_up) is not bool:
            raise InvalidValue("admins_may_top_up must be true or false", field="admins_may_top_up")
        changes["admins_may_top_up"] = admins_may_top_up
    if seat_usage_micros is not UNSET:
        if type(seat_usage_micros) is not int or not 0 <= seat_usage_micros <= MAX_AMOUNT:
            raise InvalidValue(f"seat_usage_micros must be an integer from 0 to {MAX_AMOUNT}",
                               field="seat_usage_micros")
        changes["seat_usage_micros"] = seat_usage_micros
    current = settings_of(session, org_id)
    before = {name: getattr(current, name) for name in changes}
    session.add(current)
    for name, value in changes.items():
        setattr(current, name, value)
    record(session, actor, Action.ORG_SETTINGS_CHANGED, Target("org", org_id, org_id),
           {name: {"before": before[name], "after": value} for name, value in changes.items()}, org_id=org_id)
    return current
