"""Team wallets' row locks (DESIGN.md 3.8): a wallet made when missing, locked (then its team's row) and
read as an ORM object or as plain columns, its period rolled, and saved back.

Every change to a wallet happens under its row lock (`FOR UPDATE` on PostgreSQL; on SQLite every
write transaction holds the database's write lock from BEGIN IMMEDIATE). Re-exported by
identity.wallets, where credits and controls use them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from audit import clock
from identity.errors import NotFound
from identity.models import Org, Team
from identity.wallet_models import Wallet
from identity.wallet_periods import SPENDING_LIMIT_REACHED, period_at


def _upsert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(Wallet.__table__).on_conflict_do_nothing(index_elements=["team_id"])


def ensure_wallet(session: Session, org_id: str, team_id: str) -> None:
    """Make the team's wallet (empty) unless it exists; safe under concurrency."""
    now = clock.now()
    created = session.scalar(select(Org.created_at).where(Org.id == org_id))
    start = period_at(created, now)[0] if created else now
    session.execute(_upsert(session), {
        "team_id": team_id, "org_id": org_id, "balance_micros": 0, "period_start": start, "period_spend_micros": 0,
        "period_cost_micros": 0, "discount_percent": 0, "created_at": now, "updated_at": now})


# The wallet, its org's billing anchor, and whether any key or member of the team has a limit (so
# that a debit reads the limits only when there are some: a column of the locked row, never a
# subquery, which PostgreSQL would answer as of before the wait for the lock), in the one statement that locks it.
# The team's row is locked too, after the wallet's and in the weakest mode (FOR KEY SHARE: only its
# deletion waits for it, and it waits for nothing but a deletion). On PostgreSQL a statement reads in
# a snapshot taken before it waited for the wallet: a team deleted meanwhile (its deletion holds the
# wallet's lock, identity.topups.close_team_wallet) is still in that snapshot, but a row deleted by a
# committed transaction is not locked and not returned. So a wallet whose team is gone is never
# locked: no credit, change of a control or debit reaches a deleted team's wallet.
TEAM_KEY_SHARE = "FOR KEY SHARE OF teams"
LOCK = (select(Wallet, Org.created_at, Wallet.has_subject_limits)
        .join(Org, Org.id == Wallet.org_id).join(Team, Team.id == Wallet.team_id)
        .where(Wallet.team_id == bindparam("team_id")).with_for_update(of=Wallet)
        .suffix_with(TEAM_KEY_SHARE, dialect="postgresql")
        .execution_options(populate_existing=True))


W = TypeVar("W", "Wallet", "WalletRow")


@dataclass
class Locked(Generic[W]):
    """A wallet under its row lock, rolled into the current period, and that period: the ORM object
    for credits and controls, a `WalletRow` for usage debits."""

    wallet: W
    period_start: dt.datetime
    period_end: dt.datetime
    has_subject_limits: bool = True


def lock_wallet(session: Session, org_id: str, team_id: str, *, now: dt.datetime | None = None) -> Locked[Wallet]:
    """Return the team's wallet locked until the transaction ends, its spend rolled into this period;
    NotFound for a team of another org, or none (deleted while this waited for the lock included)."""
    row = session.execute(LOCK, {"team_id": team_id}).one_or_none()
    if row is None:
        _team_of(session, org_id, team_id)  # NotFound for a team of another org or none
        ensure_wallet(session, org_id, team_id)
        row = session.execute(LOCK, {"team_id": team_id}).one_or_none()
        if row is None:  # deleted since
            raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    wallet, created, has_limits = row
    if wallet.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    start, end = period_at(created, now or clock.now())
    roll_period(wallet, start)
    return Locked(wallet, start, end, bool(has_limits))


WALLETS = cast(Table, Wallet.__table__)
ORGS = cast(Table, Org.__table__)
# What a debit may change on a wallet: `save_wallets` writes these back, and only when one moved.
MOVABLE = ("balance_micros", "period_start", "period_spend_micros", "pending_topup_id", "refusal",
           "refused_period_start", "updated_at", "period_cost_micros")


@dataclass(slots=True)
class WalletRow:
    """A wallet's columns as a usage debit reads them under the row lock: plain values, no ORM
    object (loading one and flushing it cost more CPU than the rest of a debit's Python, measured
    with `benchmarks/profile_key_check.py --usage --profile`). `save_wallets` writes back what moved."""

    team_id: str
    org_id: str
    balance_micros: int
    period_start: dt.datetime
    period_spend_micros: int
    spend_limit_micros: int | None
    discount_percent: int
    auto_topup_threshold_micros: int | None
    auto_topup_amount_micros: int | None
    pending_topup_id: str | None
    refusal: str | None
    refused_period_start: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    has_subject_limits: bool
    period_cost_micros: int
    read: tuple[Any, ...] = ()  # the MOVABLE values as locked

    def moved(self) -> bool:
        return tuple(getattr(self, name) for name in MOVABLE) != self.read


_WALLET_FIELDS = tuple(name for name in WalletRow.__dataclass_fields__ if name != "read")
assert _WALLET_FIELDS == tuple(WALLETS.columns.keys()), "WalletRow follows the wallets table, column for column"
_TEAMS = cast(Table, Team.__table__)
# As LOCK, for many wallets, in team id order; the team's row locked after the wallet's as there. A
# wallet of a deleted org is not locked either: no usage is debited to a deleted org (its keys are
# revoked but stay on their teams).
LOCK_MANY = (select(WALLETS, ORGS.c.created_at, WALLETS.c.has_subject_limits)
             .join(ORGS, ORGS.c.id == WALLETS.c.org_id).join(_TEAMS, _TEAMS.c.id == WALLETS.c.team_id)
             .where(WALLETS.c.team_id.in_(bindparam("team_ids", expanding=True)), ORGS.c.deleted_at.is_(None))
             .order_by(WALLETS.c.team_id).with_for_update(of=WALLETS)
             .suffix_with(TEAM_KEY_SHARE, dialect="postgresql"))
SAVE_WALLET = update(WALLETS).where(WALLETS.c.team_id == bindparam("w_team_id")).values(
    {name: bindparam(f"w_{name}") for name in MOVABLE})


def lock_wallets(session: Session, teams: dict[str, str]) -> dict[str, Locked[WalletRow]]:
    """Lock the wallets of `teams` (team id -> org id) in one statement, in team id order (the one
    order every caller locks in, so two calls never deadlock); make any that is missing first.
    The wallets are `WalletRow`s: the caller writes back their changes with `save_wallets`."""
    session.flush()  # a Wallet changed through the ORM earlier in this transaction is read as changed
    conn = session.connection()
    rows = conn.execute(LOCK_MANY, {"team_ids": sorted(teams)}).all()
    missing = set(teams) - {row.team_id for row in rows}
    if missing:
        for team_id in sorted(missing):
            _team_of(session, teams[team_id], team_id)
            ensure_wallet(session, teams[team_id], team_id)
        rows = conn.execute(LOCK_MANY, {"team_ids": sorted(teams)}).all()
        for team_id in sorted(set(teams) - {row.team_id for row in rows}):  # deleted meanwhile, or its org
            raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    return locked_rows(rows, teams)


def locked_rows(rows: Sequence[Any], teams: dict[str, str]) -> dict[str, Locked[WalletRow]]:
    """The `Locked` wallets of rows that begin with LOCK_MANY's columns (a wallet may be on more than
    one), each of the org `teams` names for its team (else NotFound), rolled into this period."""
    now, found, width = clock.now(), {}, len(_WALLET_FIELDS)
    for row in rows:
        if row[0] in found:  # a wallet read again on another row of the caller's join
            continue
        wallet = WalletRow(*row[:width])
        wallet.read = tuple(getattr(wallet, name) for name in MOVABLE)
        if wallet.org_id != teams[wallet.team_id]:
            raise NotFound(f"no team {wallet.team_id!r} in this org", team_id=wallet.team_id)
        start, end = period_at(row[width], now)
        roll_period(wallet, start)
        found[wallet.team_id] = Locked(wallet, start, end, bool(row[width + 1]))
    return found


def _team_of(session: Session, org_id: str, team_id: str) -> None:
    """NotFound unless the org's team exists, read now: the session may hold a copy from before a lock
    waited for its deletion."""
    found = session.scalar(select(Team.org_id).where(Team.id == team_id))
    if found is None or found != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)


def moved_wallets(locked: dict[str, Locked[WalletRow]]) -> list[dict[str, Any]]:
    """SAVE_WALLET's parameters for each locked `WalletRow` whose balance, spend, refusal or pending top-up moved."""
    return [saving(found.wallet) for found in locked.values() if found.wallet.moved()]


def saving(wallet: WalletRow) -> dict[str, Any]:
    """SAVE_WALLET's parameters for one wallet: its MOVABLE columns as they are now."""
    return {"w_team_id": wallet.team_id, **{f"w_{name}": getattr(wallet, name) for name in MOVABLE}}


def save_wallets(session: Session, locked: dict[str, Locked[WalletRow]],
                 changed: list[dict[str, Any]] | None = None) -> None:
    """Write back the locked `WalletRow`s that moved (one statement; `changed`: their `moved_wallets`)."""
    changed = moved_wallets(locked) if changed is None else changed
    if changed:
        session.connection().execute(SAVE_WALLET, changed)
        saved(session, locked)


def saved(session: Session, locked: dict[str, Locked[WalletRow]]) -> None:
    """Tell the session the locked wallets were written: an ORM copy of one would flush over the UPDATE."""
    for found in locked.values():
        held = session.identity_map.get(identity_key(Wallet, found.wallet.team_id))
        if held is not None:
            session.expire(held)


def roll_period(wallet: Wallet | WalletRow, start: dt.datetime) -> None:
    """Start the wallet's spend over when the period has turned; a limit refusal ends with its period."""
    if wallet.period_start != start:
        wallet.period_start, wallet.period_spend_micros, wallet.period_cost_micros = start, 0, 0
        if wallet.refusal == SPENDING_LIMIT_REACHED:
            wallet.refusal, wallet.refused_period_start = None, None
