"""Reading wallets (DESIGN.md 3.8): a team's balance and limits, its spend per key, member and period.

Reads only, for anyone of the org (`usage.read`, DESIGN 3.2: "read members, teams, usage").
Spend comes from the ledger, so a removed member's or a revoked key's past spend stays visible:
the ledger names them by id and outlives them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, true
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity.errors import InvalidValue, NotFound
from identity.lookups import get_team
from identity.models import ApiKey, Org, RoleGrant, Team, User
from identity.paging import Window, within
from identity.roles import authorize, refusal
from identity.vocabulary import KeyStatus
from identity.wallet_models import SpendLimit, UsageTotal, Wallet, WalletEntry
from identity.wallet_periods import live_refusal, period_at, refusal_in_force, remaining
from identity.wallets import USAGE

BY = ("key", "member", "period")


@dataclass(frozen=True)
class WalletView:
    team_id: str
    balance_micros: int
    period_start: dt.datetime
    period_end: dt.datetime
    period_spend_micros: int
    spend_limit_micros: int | None
    discount_percent: int
    auto_topup: dict[str, int] | None
    refusal: str | None
    pending_topup_id: str | None

    @property
    def remaining_micros(self) -> int:
        """What the team's keys may still spend this period: the balance, bounded by the team's limit less
        its spend (identity.wallet_periods.remaining, the key check's computation; a key's or member's own
        limit may bound one key further)."""
        limits = [] if self.spend_limit_micros is None else [(self.spend_limit_micros, self.period_spend_micros)]
        return remaining(self.balance_micros, limits)

    def as_dict(self) -> dict[str, Any]:
        return {"team_id": self.team_id, "balance_micros": self.balance_micros,
                "period": {"start": self.period_start.isoformat(), "end": self.period_end.isoformat()},
                "period_spend_micros": self.period_spend_micros, "spend_limit_micros": self.spend_limit_micros,
                "remaining_micros": self.remaining_micros, "discount_percent": self.discount_percent,
                "auto_topup": self.auto_topup, "refusal": self.refusal, "resets_at": self.period_end.isoformat(),
                "pending_topup_id": self.pending_topup_id}


def get_wallet(session: Session, actor: Actor, org_id: str, team_id: str) -> WalletView:
    """Return the team's wallet as of now (an empty one when it was never used)."""
    authorize(actor, "usage.read", org_id=org_id, team_id=team_id)
    get_team(session, org_id, team_id)
    org = session.get_one(Org, org_id)
    start, end = period_at(org.created_at, clock.now())
    return view_of(team_id, session.get(Wallet, team_id), start, end)


def view_of(team_id: str, wallet: Wallet | None, start: dt.datetime, end: dt.datetime) -> WalletView:
    """Describe a team's wallet in the billing period [start, end) (an empty one when it has no row)."""
    if wallet is None:
        return WalletView(team_id, 0, start, end, 0, None, 0, None, None, None)
    spend = wallet.period_spend_micros if wallet.period_start == start else 0
    auto = None if wallet.auto_topup_threshold_micros is None else {
        "threshold_micros": wallet.auto_topup_threshold_micros, "amount_micros": wallet.auto_topup_amount_micros or 0}
    return WalletView(team_id, wallet.balance_micros, start, end, spend, wallet.spend_limit_micros,
                      wallet.discount_percent, auto, live_refusal(wallet.refusal, wallet.refused_period_start, start),
                      wallet.pending_topup_id)


def _period_arg(session: Session, org_id: str, period: str | None) -> dt.datetime:
    org = session.get_one(Org, org_id)
    if period is None:
        return period_at(org.created_at, clock.now())[0]
    try:
        moment = dt.datetime.fromisoformat(period)
    except ValueError:
        raise InvalidValue("period must be an ISO 8601 time within the billing period", field="period") from None
    if moment.tzinfo is None:
        raise InvalidValue("period must carry a time zone (Z or +00:00)", field="period")
    try:
        return period_at(org.created_at, moment)[0]
    except (ValueError, OverflowError):  # a period that would begin or end outside the calendar
        raise InvalidValue("period must be a time in a billing period within the years 1 to 9999",
                           field="period") from None


SPEND_PAGE = 100  # keys or members per page of spend (the admin API's ?limit= goes to 500)
CURSOR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # a key's or member's id
NO_MEMBER = "00000000-0000-0000-0000-000000000000"  # a cursor past the usage of service keys (subject "")


def spend(session: Session, actor: Actor, org_id: str, team_id: str, *, by: str, period: str | None = None,
          limit: int = SPEND_PAGE, after: str = "") -> list[dict[str, Any]]:
    """Return the team's usage grouped `by` key or member (in one period, default the current), or per period.

    Read from the usage totals the debits keep (UsageTotal), not the ledger's rows: by key or member,
    up to `limit` of them in id order after `after` (a page); per period, every period.
    """
    authorize(actor, "usage.read", org_id=org_id, team_id=team_id)
    get_team(session, org_id, team_id)
    if by not in BY:
        raise InvalidValue(f"by must be one of {', '.join(BY)}", field="by")
    if after and not CURSOR.fullmatch(after):
        raise InvalidValue("after must be the `next` of the previous page", field="after")
    t = UsageTotal
    stmt: Select[Any, Any, Any, Any]
    if by == "period":  # per period, over its keys' totals
        stmt = (select(t.period_start, func.sum(t.spend_micros), func.sum(t.cost_micros), func.sum(t.requests))
                .where(t.team_id == team_id, t.subject_type == "key").group_by(t.period_start)
                .order_by(t.period_start))
    else:
        stmt = (select(t.subject_id, t.spend_micros, t.cost_micros, t.requests)
                .where(t.team_id == team_id, t.period_start == _period_arg(session, org_id, period),
                       t.subject_type == by, t.subject_id > after if after else true())
                .order_by(t.subject_id).limit(limit))
    name = {"key": "key_id", "member": "user_id", "period": "period_start"}[by]
    rows = [{name: value.isoformat() if isinstance(value, dt.datetime) else value or None,
             "spend_micros": int(spent or 0), "cost_micros": int(cost or 0), "requests": int(count)}
            for value, spent, cost, count in session.execute(stmt)]
    return _named(session, rows, by)


def page_of(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Split `rows` of spend, read with `limit + 1`, into the page and the `after` of the page that
    follows (None on the last page). Usage with no member (a service key's) sorts first and is
    passed with the nil uuid. Per period there is one page: every period."""
    if len(rows) <= limit or "period_start" in rows[-1]:
        return rows, None
    page = rows[:limit]
    last = page[-1].get("key_id", page[-1].get("user_id"))
    return page, last or NO_MEMBER


def _named(session: Session, rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Name the keys (prefix, name) and members (userName, removed) of the rows, present or gone."""
    if by == "key":
        ids = [r["key_id"] for r in rows if r["key_id"]]
        found = {k.id: k for k in session.scalars(select(ApiKey).where(ApiKey.id.in_(ids)))}
        for row in rows:
            key = found.get(row["key_id"])
            row.update(prefix=key.prefix if key else None, name=key.name if key else None,
                       user_id=key.user_id if key else None, status=str(key.status) if key else None)
    elif by == "member":
        ids = [r["user_id"] for r in rows if r["user_id"]]
        users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
        for row in rows:
            user = users.get(row["user_id"])
            row.update(userName=user.user_name if user else None,
                       removed=user is None or user.deleted_at is not None)
    return rows


def member_spend(session: Session, actor: Actor, org_id: str, user_id: str) -> list[dict[str, Any]]:
    """Return the member's keys' spend this period, per team and key (their page in the console).

    Each row names its team (`team_name`) and says whether it still exists (`team_live`): the ledger
    outlives a deleted team, whose wallet page is gone. One read for all the rows' teams."""
    authorize(actor, "usage.read", org_id=org_id)
    user = session.get(User, user_id)
    if user is None or user.org_id != org_id:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    org = session.get_one(Org, org_id)
    start = period_at(org.created_at, clock.now())[0]
    stmt = (select(WalletEntry.team_id, WalletEntry.key_id, -func.sum(WalletEntry.amount_micros), func.count())
            .where(WalletEntry.user_id == user_id, WalletEntry.kind == USAGE, WalletEntry.period_start == start,
                   WalletEntry.org_id == org_id)
            .group_by(WalletEntry.team_id, WalletEntry.key_id).order_by(WalletEntry.team_id, WalletEntry.key_id))
    rows: list[dict[str, Any]] = [{"team_id": team, "key_id": key, "spend_micros": int(spent or 0),
                                   "requests": int(n)}
                                  for team, key, spent, n in session.execute(stmt)]
    ids = {row["team_id"] for row in rows}
    names: dict[str, str] = {team: name for team, name in session.execute(
        select(Team.id, Team.name).where(Team.id.in_(ids), Team.org_id == org_id))}
    for row in rows:
        row.update(team_name=names.get(row["team_id"]), team_live=row["team_id"] in names)
    return _named(session, rows, "key")


@dataclass(frozen=True)
class KeySpend:
    """A key's spend this period and the spend refusal in force on it (DESIGN 3.8), as the key check
    would answer now: `refusal` (`balance_exhausted`, `spending_limit_reached` or None), its `scope`
    (`team`, `key` or `member`) and `resets_at`, the period's end (when a limit's refusal lapses; a
    balance's lasts until a credit lands)."""

    spend_micros: int
    refusal: str | None
    scope: str | None
    resets_at: dt.datetime


def key_states(session: Session, actor: Actor, org_id: str, keys: Sequence[ApiKey]) -> dict[str, KeySpend]:
    """Return each of `keys`' spend this period and refusal in force, by key id, in four queries
    whatever their number (the org, usage totals, wallets, limits): a page of keys, as the key list
    shows it. The refusal is identity.wallet_periods.refusal_in_force, the key check's own reading."""
    authorize(actor, "usage.read", org_id=org_id)
    org = session.get_one(Org, org_id)
    start, end = period_at(org.created_at, clock.now())
    keys = [key for key in keys if key.org_id == org_id]
    teams = sorted({key.team_id for key in keys if key.team_id})
    if not teams:  # no key of a team (a team's deletion revoked them): no spend to read
        return {key.id: KeySpend(0, None, None, end) for key in keys}
    spent = {key_id: micros for key_id, micros in session.execute(select(UsageTotal.subject_id, UsageTotal.spend_micros)
             .where(UsageTotal.team_id.in_(teams), UsageTotal.period_start == start, UsageTotal.subject_type == "key",
                    UsageTotal.subject_id.in_([key.id for key in keys])))}
    wallets = {w.team_id: w for w in session.scalars(select(Wallet).where(Wallet.team_id.in_(teams)))}
    # A rotated key in its grace spends under its successor's limit (wallet_controls.pass_key_limit).
    limited = sorted({key.rotated_to or key.id for key in keys})
    holders = sorted({key.user_id for key in keys if key.user_id})
    rows = session.scalars(select(SpendLimit).where(SpendLimit.org_id == org_id, SpendLimit.team_id.in_(teams), or_(
        and_(SpendLimit.subject_type == "key", SpendLimit.subject_id.in_(limited)),
        and_(SpendLimit.subject_type == "member", SpendLimit.subject_id.in_(holders)))))
    limits: dict[tuple[str | None, str, str | None], SpendLimit] = {
        (row.team_id, row.subject_type, row.subject_id): row for row in rows}
    found = {}
    for key in keys:
        wallet = wallets.get(key.team_id or "")
        team = None if wallet is None else (wallet.refusal, wallet.refused_period_start)
        own = [(scope, limits.get((key.team_id, scope, subject)))
               for scope, subject in (("key", key.rotated_to or key.id), ("member", key.user_id))]
        refusal = refusal_in_force(start, team, [(scope, row.period_start, row.refused_period_start)
                                                 for scope, row in own if row is not None]) if key.team_id else None
        code, scope = refusal or (None, None)
        found[key.id] = KeySpend(int(spent.get(key.id) or 0), code, scope, end)
    return found


def ledger(session: Session, actor: Actor, org_id: str, team_id: str, *, limit: int = 100,
           before: int | None = None) -> list[WalletEntry]:
    """Return the team's ledger rows, newest first (billing: owners and admins); `before` an entry id."""
    authorize(actor, "billing.read", org_id=org_id)
    get_team(session, org_id, team_id)
    stmt = select(WalletEntry).where(WalletEntry.team_id == team_id, WalletEntry.org_id == org_id)
    if before is not None:
        stmt = stmt.where(WalletEntry.id < before)
    return list(session.scalars(stmt.order_by(WalletEntry.id.desc()).limit(limit)))


def with_limits(session: Session, actor: Actor, org_id: str, team_id: str, rows: list[dict[str, Any]], *,
                by: str) -> list[dict[str, Any]]:
    """Give each of `spend`'s rows `by` key or member its period limit (`limit_micros`, None for none).
    For whoever may set limits (`wallets.manage`), add a row of no spend for each limited key or
    member without usage this period (the team's first SPEND_PAGE limits): a limit set before the
    period's first call, or kept from a past period, is then still shown, and can be changed or
    removed where it is shown; and while the rows are fewer than SPEND_PAGE, the team's other live
    keys (or members), by id, up to SPEND_PAGE rows in all: a key can be given a limit before it
    spends (ModelBridge's per-key limits). Not for the others: `usage.read` is every role's, and a
    key that spent nothing is named only to those who may list keys (a member sees their own).
    Two reads, four for those who manage."""
    authorize(actor, "usage.read", org_id=org_id, team_id=team_id)
    get_team(session, org_id, team_id)
    name = "key_id" if by == "key" else "user_id"
    shown = [row[name] for row in rows if row[name]]
    kind = SpendLimit.subject_type == by
    limits = {row.subject_id: row.limit_micros for row in session.scalars(
        select(SpendLimit).where(SpendLimit.team_id == team_id, SpendLimit.org_id == org_id, kind,
                                 SpendLimit.subject_id.in_(shown)))}
    if refusal(actor, "wallets.manage", org_id=org_id) is not None:
        return [{**row, "limit_micros": limits.get(row[name] or "")} for row in rows]
    unused = [row for row in session.scalars(within(select(SpendLimit).where(
        SpendLimit.team_id == team_id, SpendLimit.org_id == org_id, kind, SpendLimit.subject_id.not_in(shown)),
        SpendLimit.created_at, SpendLimit.id, Window(SPEND_PAGE)))][:SPEND_PAGE]
    limits.update({row.subject_id: row.limit_micros for row in unused})
    listed = shown + [row.subject_id for row in unused]
    room = SPEND_PAGE - len(rows) - len(unused)
    idle = _team_subjects(session, org_id, team_id, by, listed, room) if room > 0 else []
    added = _named(session, [{name: subject, "spend_micros": 0, "cost_micros": 0, "requests": 0}
                             for subject in [row.subject_id for row in unused] + idle], by)
    return [{**row, "limit_micros": limits.get(row[name] or "")} for row in rows + added]


def _team_subjects(session: Session, org_id: str, team_id: str, by: str, besides: list[str], limit: int) -> list[str]:
    """The ids of up to `limit` of the team's live keys (active, not rotated) or present members, by id,
    but those `besides`."""
    if by == "key":
        stmt = select(ApiKey.id).where(ApiKey.org_id == org_id, ApiKey.team_id == team_id,
                                       ApiKey.status == KeyStatus.ACTIVE, ApiKey.rotated_to.is_(None),
                                       ApiKey.id.not_in(besides)).order_by(ApiKey.id)
    else:
        stmt = (select(RoleGrant.user_id).join(User, User.id == RoleGrant.user_id).distinct()
                .where(RoleGrant.org_id == org_id, RoleGrant.team_id == team_id, User.deleted_at.is_(None),
                       RoleGrant.user_id.not_in(besides)).order_by(RoleGrant.user_id))
    return list(session.scalars(stmt.limit(limit)))


def ledger_names(session: Session, actor: Actor, org_id: str, entries: Sequence[WalletEntry]) -> dict[str, str]:
    """Name who each of the ledger's `entries` was by (the user or API key that credited it, the key
    and member whose usage it debits), by id, in two reads: a page of the ledger as the console shows
    it. A gone member or key keeps its id (the ledger outlives them); a system actor is named as such."""
    authorize(actor, "billing.read", org_id=org_id)
    users = {e.actor_id for e in entries if e.actor_type == "user"} | {e.user_id for e in entries if e.user_id}
    key_ids = {e.actor_id for e in entries if e.actor_type == "api_key"} | {e.key_id for e in entries if e.key_id}
    names = {user.id: user.user_name for user in session.scalars(
        select(User).where(User.org_id == org_id, User.id.in_(sorted(users))))} if users else {}
    if key_ids:
        names.update({key.id: f"{key.name} ({key.prefix})" for key in session.scalars(
            select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id.in_(sorted(key_ids))))})
    return names


def subject_limits(session: Session, actor: Actor, org_id: str, team_id: str,
                   window: Window | None = None) -> list[SpendLimit]:
    """Return the per-key and per-member limits of the team, oldest first: those of `window` and one
    more when there are more (identity.paging; None: every one)."""
    authorize(actor, "usage.read", org_id=org_id, team_id=team_id)
    get_team(session, org_id, team_id)
    stmt = select(SpendLimit).where(SpendLimit.team_id == team_id, SpendLimit.org_id == org_id)
    return list(session.scalars(within(stmt, SpendLimit.created_at, SpendLimit.id, window)))
