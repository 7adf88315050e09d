"""Usage from the gateway (DESIGN.md 3.8): debits of team wallets, exact under concurrency.

One call carries one record or a batch; each record is a key, a model, a cost in micro-cents and
the gateway's request id, which is the idempotency key (a unique index on the ledger): a retried
request id answers the first outcome and never debits again. A record is checked whole before
anything is written (an unknown key, a bad amount: the call is refused, nothing written).

Exactness: the wallets of a call are locked in team id order (`FOR UPDATE`; SQLite's BEGIN
IMMEDIATE holds the database), then the request ids already booked are read, then each debit is
decided against the locked balance and limits. So the balance never goes below zero and no limit
is passed: a debit that would is refused (`balance_exhausted`, `spending_limit_reached`) and the
refusal is remembered on the wallet (or the key's or member's limit) for the key check.

Audit: one `wallet.usage_recorded` event per org per call summarises its debits (count, cost,
amount debited, per team the debit and the balance after, the request ids of a small batch), in
the same transaction. Not one event per row: a usage row is written by the gateway's credential for every
model request, it is already an append-only record with its own unique request id, and an event
per row would double every debit's writes and queue every request of an org on its audit chain's
head. `identity billing check` proves the summaries and the ledger agree, team by team.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, func, literal_column, or_, select, true, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity import topups, usage_audit
from identity.errors import NotFound
from identity.model_base import bound_columns
from identity.models import ApiKey
from identity.usage_records import AMOUNT_OUT_OF_RANGE as AMOUNT_OUT_OF_RANGE
from identity.usage_records import MAX_BATCH as MAX_BATCH
from identity.usage_records import Outcome as Outcome
from identity.usage_records import UsageRecord as UsageRecord
from identity.usage_records import parse_records as parse_records
from identity.wallet_controls import KEY, MEMBER
from identity.wallet_models import SpendLimit, UsageTotal
from identity.wallet_periods import BALANCE_EXHAUSTED, SPENDING_LIMIT_REACHED, remaining
from identity.wallets import (
    ENTRIES,
    INSERT_ENTRY,
    LOCK_MANY,
    MAX_TOTAL,
    ORGS,
    SAVE_WALLET,
    TEAM_KEY_SHARE,
    USAGE,
    WALLETS,
    Locked,
    WalletRow,
    lock_wallets,
    locked_rows,
    moved_wallets,
    save_wallets,
    saved,
)


def discounted(cost: int, discount_percent: int) -> int:
    """Return `cost` less `discount_percent`%, rounded half up to the whole micro-cent (integers only)."""
    return (2 * cost * (100 - discount_percent) + 100) // 200


# Core statements on the tables (not the ORM classes): no ORM execution for reads of plain columns.
_KEYS_T = cast(Table, ApiKey.__table__)
_KEY_COLUMNS = (_KEYS_T.c.id, _KEYS_T.c.org_id, _KEYS_T.c.team_id, _KEYS_T.c.user_id, _KEYS_T.c.rotated_to)
# A key of a deleted org is not found: no usage is debited to a deleted org.
KEYS = (select(*_KEY_COLUMNS).join(ORGS, ORGS.c.id == _KEYS_T.c.org_id)
        .where(_KEYS_T.c.id.in_(bindparam("ids", expanding=True)), ORGS.c.deleted_at.is_(None)))
# The keys and their teams' wallets in one statement (a round trip, not two): LOCK_MANY's columns
# (wallets locked in team id order, the one order every caller locks in, each with its team's row
# and not of a deleted org, as LOCK_MANY), then the key's. A key without a team, whose team has no
# wallet yet, was deleted while this waited for the wallet's lock, or of a deleted org is not on it:
# `record_usage` then takes the two statements (KEYS, read after the lock, then `lock_wallets`, which
# makes a missing wallet), and so refuses a key whose team or org was deleted as it would a moment later.
KEYED_LOCK = (select(*LOCK_MANY.selected_columns, *_KEY_COLUMNS).select_from(LOCK_MANY.get_final_froms()[0])
              .join(_KEYS_T, _KEYS_T.c.team_id == WALLETS.c.team_id)
              .where(_KEYS_T.c.id.in_(bindparam("ids", expanding=True)), ORGS.c.deleted_at.is_(None))
              .order_by(WALLETS.c.team_id).with_for_update(of=WALLETS)
              .suffix_with(TEAM_KEY_SHARE, dialect="postgresql"))
BOOKED = select(ENTRIES.c.request_id, ENTRIES.c.team_id, ENTRIES.c.amount_micros).where(
    ENTRIES.c.request_id.in_(bindparam("ids", expanding=True)), ENTRIES.c.kind == USAGE)
# For a call of one record, KEYED_LOCK also answers the request id's booking (the same columns as
# BOOKED, NULL when none) and whether that answer may be trusted. On SQLite it may: BEGIN IMMEDIATE
# holds the database. On PostgreSQL the SELECT reads in a snapshot taken before any wait for the
# wallet's lock, while the wallet's columns come from its newest version: the booking is trusted
# only when that version is the one of the snapshot (its xmin, read beside it by a subquery); a
# debit always writes its wallet, so a booking committed meanwhile for this team is then seen.
# Else `record_usage` reads BOOKED after the lock, as a batch does. (The same request id booked
# meanwhile by another team's key is caught, as before, by the unique index and the view's retry.)
_SNAPSHOT_VERSION = {"postgresql": literal_column(
    "wallets.xmin = (SELECT seen.xmin FROM wallets AS seen WHERE seen.team_id = wallets.team_id)"),
    "sqlite": true()}
KEYED_LOCK_ONE = {dialect: (KEYED_LOCK.add_columns(fresh, ENTRIES.c.request_id, ENTRIES.c.team_id,
                                                   ENTRIES.c.amount_micros)
                            .outerjoin(ENTRIES, and_(ENTRIES.c.request_id == bindparam("request_id"),
                                                     ENTRIES.c.kind == USAGE)))
                  for dialect, fresh in _SNAPSHOT_VERSION.items()}
# The limits of the call's keys and members, read after the wallets' lock (a statement of its own,
# so on PostgreSQL in a snapshot taken after the wait): each key's with the key's id, found under the
# key's `rotated_to` as it is now, not as KEYED_LOCK read it before the wait. A rotation moves the
# key's limit to its successor under the wallet's lock without writing the wallet.
_LIMITED_KEY = and_(_KEYS_T.c.id.in_(bindparam("key_ids", expanding=True)), SpendLimit.subject_type == KEY,
                    func.coalesce(_KEYS_T.c.rotated_to, _KEYS_T.c.id) == SpendLimit.subject_id)
LIMITS = (select(SpendLimit, _KEYS_T.c.id).outerjoin(_KEYS_T, _LIMITED_KEY)
          .where(SpendLimit.team_id.in_(bindparam("team_ids", expanding=True)),
                 or_(_KEYS_T.c.id.is_not(None), and_(SpendLimit.subject_type == MEMBER, SpendLimit.subject_id.in_(
                     bindparam("user_ids", expanding=True))))))
_WIDTH = len(LOCK_MANY.selected_columns)  # where a KEYED_LOCK row's key begins


class KeyRow(NamedTuple):
    id: str
    org_id: str
    team_id: str | None
    user_id: str | None
    rotated_to: str | None


class Booked(NamedTuple):
    request_id: str
    team_id: str
    amount_micros: int


def _lock_keys(session: Session, records: list[UsageRecord]) -> tuple[
        dict[str, KeyRow], dict[str, Locked[WalletRow]], dict[str, Booked] | None]:
    """The call's keys by id, their teams' wallets locked (team id -> Locked), and for one record
    the request ids already booked (None: not known, to be read); NotFound for a key unknown or
    without a team (naming the first record of it)."""
    session.flush()  # a Wallet changed through the ORM earlier in this transaction is read as changed
    conn, ids = session.connection(), sorted({r.key_id for r in records})
    if len(records) == 1:
        rows = conn.execute(KEYED_LOCK_ONE[conn.dialect.name], {"ids": ids, "request_id": records[0].request_id}).all()
    else:
        rows = conn.execute(KEYED_LOCK, {"ids": ids}).all()
    keys = {row[_WIDTH]: KeyRow(*row[_WIDTH:_WIDTH + len(_KEY_COLUMNS)]) for row in rows}
    if len(keys) == len(ids):
        booked = None
        if len(records) == 1 and rows[0][-4]:
            booked = {row[-3]: Booked(*row[-3:]) for row in rows if row[-3] is not None}
        return keys, locked_rows(rows, {key.team_id: key.org_id for key in keys.values() if key.team_id}), booked
    keys = {row.id: KeyRow(*row) for row in conn.execute(KEYS, {"ids": ids})}  # the rare way: a missing wallet
    teams: dict[str, str] = {}
    for index, item in enumerate(records):
        key = keys.get(item.key_id)
        if key is None or key.team_id is None:
            raise NotFound(f"no key {item.key_id!r}" + (" (its team was deleted)" if key else ""),
                           field="key_id", index=index)
        teams.setdefault(key.team_id, key.org_id)
    return keys, lock_wallets(session, teams), None


def record_usage(session: Session, actor: Actor, records: list[UsageRecord]) -> list[Outcome]:
    """Debit each record's team (discount first); answer each record's outcome, in the order given.

    Whatever the number of records and teams: one statement that reads the keys and locks every
    wallet (in team id order), one read of the request ids already booked and one of the limits,
    one INSERT of the new rows, one of the totals, one UPDATE of the wallets, and one audit event
    per org (identity.usage_audit). On PostgreSQL a debit of one record writes its row, its totals and its wallet in one
    statement (WRITE_ONE).
    """
    conn = session.connection()
    keys, locked, booked = _lock_keys(session, records)
    by_team: dict[str, list[tuple[int, UsageRecord]]] = defaultdict(list)
    for index, item in enumerate(records):
        key = keys.get(item.key_id)
        if key is None or key.team_id is None:
            raise NotFound(f"no key {item.key_id!r}" + (" (its team was deleted)" if key else ""),
                           field="key_id", index=index)
        by_team[key.team_id].append((index, item))
    if booked is None:
        booked = {row.request_id: Booked(*row)
                  for row in conn.execute(BOOKED, {"ids": [r.request_id for r in records]})}
    limits = _limits(session, locked, records, keys)
    outcomes: list[Outcome | None] = [None] * len(records)
    rows: list[dict[str, Any]] = []
    for team_id in sorted(by_team):
        for index, outcome in _debit_team(session, actor, locked[team_id], by_team[team_id], keys, booked,
                                          limits, rows):
            outcomes[index] = outcome
    changed = moved_wallets(locked)
    if len(rows) == 1 and len(changed) == 1 and conn.dialect.name == "postgresql":
        totals = usage_totals(rows)
        conn.execute(WRITE_ONE, {**{f"e_{name}": value for name, value in rows[0].items()},
                                 **{f"t{n}_{name}": value for n, total in enumerate(totals) for name, value in
                                    total.items()}, **changed[0]})
        saved(session, locked)
    else:
        save_wallets(session, locked, changed)
        if rows:
            conn.execute(INSERT_ENTRY, rows)
            conn.execute(_add_totals(conn.dialect.name), usage_totals(rows))
    if rows:
        usage_audit.summarise(session, actor, locked, rows)
    return [o for o in outcomes if o is not None]


_TOTALS_T = cast(Table, UsageTotal.__table__)
_ADD_TOTALS: dict[str, Any] = {}
SUMMED = ("spend_micros", "cost_micros", "requests")


def _add_totals(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE adding to a usage total (made once per dialect)."""
    if dialect not in _ADD_TOTALS:
        _ADD_TOTALS[dialect] = adding_totals((postgresql if dialect == "postgresql" else sqlite).insert(_TOTALS_T))
    return _ADD_TOTALS[dialect]


def adding_totals(made: Any) -> Any:
    """`made` (an INSERT of usage totals, of either dialect) adding to the total when there is one."""
    return made.on_conflict_do_update(index_elements=["team_id", "period_start", "subject_type", "subject_id"],
                                      set_={name: _TOTALS_T.c[name] + made.excluded[name] for name in SUMMED})


# On PostgreSQL a debit of one record writes in one statement (a round trip, not three): its ledger
# row and its two totals (the key's and the member's, in _totals' order) in data-modifying WITHs, its
# wallet (SAVE_WALLET's parameters) in the UPDATE. The three touch different tables: no part reads
# another's rows. The totals come from a UNION, not a multi-row VALUES: SQLAlchemy compiles that anew
# for each call.
_TOTAL_0, _TOTAL_1 = bound_columns(_TOTALS_T, "t0_"), bound_columns(_TOTALS_T, "t1_")
_NEW_TOTALS = postgresql.insert(_TOTALS_T).from_select(list(_TOTAL_0), union_all(
    select(*_TOTAL_0.values()), select(*_TOTAL_1.values())))
ADD_TOTALS_ONE = adding_totals(_NEW_TOTALS)
WRITE_ONE = SAVE_WALLET.add_cte(ENTRIES.insert().values(bound_columns(ENTRIES, "e_")).cte("new_entry"),
                                ADD_TOTALS_ONE.cte("new_totals"))


def usage_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The call's usage rows summed per (team, period, key) and per (team, period, member), in key order:
    the wallets are locked, so each team's totals are written by one debit at a time."""
    sums: dict[tuple[str, dt.datetime, str, str], dict[str, Any]] = {}
    for row in rows:
        for kind, subject in (("key", row["key_id"]), ("member", row["user_id"] or "")):
            key = (row["team_id"], row["period_start"], kind, subject)
            found = sums.setdefault(key, {"team_id": key[0], "period_start": key[1], "subject_type": kind,
                                          "subject_id": subject, "org_id": row["org_id"], "spend_micros": 0,
                                          "cost_micros": 0, "requests": 0})
            found["spend_micros"] -= row["amount_micros"]
            found["cost_micros"] += row["cost_micros"]
            found["requests"] += 1
    return [sums[key] for key in sorted(sums)]


def _limits(session: Session, locked: dict[str, Locked[WalletRow]], records: list[UsageRecord],
            keys: dict[str, KeyRow]) -> dict[tuple[str, str], SpendLimit]:
    """The key and member limits of the call's teams that have any, by (team, subject), rolled into the period.

    Read after the lock: a key whose limit is found under another subject than KEYED_LOCK's snapshot
    said (rotated while this waited: its limit went to its successor) has its `rotated_to` in `keys`
    set as it is now, so the debit spends under its limit (`limit_subject`)."""
    teams = sorted(team for team, found in locked.items() if found.has_subject_limits)
    if not teams:
        return {}
    key_ids = sorted({r.key_id for r in records})
    user_ids = sorted({keys[k].user_id or "" for k in key_ids} - {""})
    found: dict[tuple[str, str], SpendLimit] = {}
    for row, key_id in session.execute(LIMITS, {"team_ids": teams, "key_ids": key_ids, "user_ids": user_ids}):
        found[(row.team_id, row.subject_id)] = row
        if key_id is not None and limit_subject(keys[key_id]) != row.subject_id:
            keys[key_id] = keys[key_id]._replace(rotated_to=row.subject_id)
    for row in found.values():
        if row.period_start != locked[row.team_id].period_start:
            row.period_start, row.spend_micros = locked[row.team_id].period_start, 0
    return found


def limit_subject(key: Any) -> str:
    """The key whose limit a key spends under: its own, or (rotated, in its grace) its successor's,
    which took the limit (identity.wallet_controls.pass_key_limit); the key check joins the same."""
    return str(key.rotated_to or key.id)


def _debit_team(session: Session, actor: Actor, locked: Locked[WalletRow], items: list[tuple[int, UsageRecord]],
                keys: dict[str, Any], booked: dict[str, Booked], limits: dict[tuple[str, str], SpendLimit],
                rows: list[dict[str, Any]]) -> list[tuple[int, Outcome]]:
    # One function for one team's share of a call, so the locked state is read and written in one place.
    wallet, now, team_id = locked.wallet, clock.now(), locked.wallet.team_id
    answers, added = [], 0
    refused: list[tuple[str, str | None, SpendLimit | None]] = []  # each distinct refusal, in order
    for index, item in items:
        key = keys[item.key_id]
        key_limit, member_limit = limits.get((team_id, limit_subject(key))), limits.get((team_id, key.user_id or ""))
        answer = Outcome(item.request_id, "debited", team_id, resets_at=locked.period_end)
        if item.request_id in booked:
            prior = booked[item.request_id]
            answer.status, answer.debited_micros = "duplicate", -prior.amount_micros
            if prior.team_id != team_id:  # first booked by another team's key: that team, not this one's numbers
                answer.team_id, answer.balance_micros, answer.remaining_micros = prior.team_id, None, None
                answer.resets_at = None
        else:
            debit = discounted(item.cost_micros, wallet.discount_percent)
            code, scope = debit_refusal(wallet, debit, item.cost_micros, key_limit, member_limit)
            if code == AMOUNT_OUT_OF_RANGE:  # this record only: no refusal to remember for the key check
                answer.status, answer.limit_scope = code, scope
            elif code:
                answer.status, answer.limit_scope = code, scope
                refusal = (code, scope, key_limit if scope == "key" else member_limit if scope == "member" else None)
                if refusal not in refused:
                    refused.append(refusal)
            else:
                book(wallet, debit, item.cost_micros, key_limit, member_limit)
                answer.debited_micros, added = debit, added + 1
                rows.append(entry_row(actor, wallet, locked.period_start, item, key.user_id, debit, now))
        answers.append((index, answer))
    if added:
        wallet.updated_at = now
    if added or any(code == BALANCE_EXHAUSTED for code, _, _ in refused):  # below the threshold, or out of money
        topups.request_if_due(session, actor, wallet)
    for refusal in refused:  # each one, for the key check: a key's limit, a member's, the team's
        usage_audit.remember_refusal(session, actor, locked, *refusal)
    records_of = dict(items)
    for index, answer in answers:
        if answer.team_id != team_id:  # a duplicate of another team's debit: its wallet is not locked here
            continue
        key = keys[records_of[index].key_id]
        answer.balance_micros = wallet.balance_micros
        answer.remaining_micros = key_remaining(wallet, limits.get((team_id, limit_subject(key))),
                                             limits.get((team_id, key.user_id or "")))
    return answers


def entry_row(actor: Actor, wallet: WalletRow, period_start: dt.datetime, item: UsageRecord, user_id: str | None,
              debit: int, now: dt.datetime) -> dict[str, Any]:
    """The ledger row of an accepted debit of `item` (`debit` micro-cents, after the discount)."""
    return {"org_id": wallet.org_id, "team_id": wallet.team_id, "kind": USAGE, "amount_micros": -debit,
            "cost_micros": item.cost_micros, "discount_percent": wallet.discount_percent, "key_id": item.key_id,
            "user_id": user_id, "model": item.model, "request_id": item.request_id, "reference": None,
            "period_start": period_start, "actor_type": actor.type, "actor_id": actor.id[:80], "created_at": now}


def key_remaining(wallet: WalletRow, key_limit: SpendLimit | None, member_limit: SpendLimit | None) -> int:
    """What the key may still spend: the balance, bounded by the limits that apply (team, key, member),
    as the key check answers it right after."""
    limits = [(found.limit_micros, found.spend_micros) for found in (key_limit, member_limit) if found is not None]
    if wallet.spend_limit_micros is not None:
        limits.append((wallet.spend_limit_micros, wallet.period_spend_micros))
    return remaining(wallet.balance_micros, limits)


def debit_refusal(wallet: Any, debit: int, cost: int, key_limit: SpendLimit | None,
             member_limit: SpendLimit | None) -> tuple[str | None, str | None]:
    """Why a debit of `debit` micro-cents (of `cost` before the discount) may not be booked on the
    locked wallet (code, scope), or (None, None).

    `amount_out_of_range`: the period's cost would pass MAX_TOTAL (and with it a key's or member's
    usage totals, at most the team's; the spend is at most the cost). Every cost is at most
    MAX_AMOUNT, but nothing else bounds their sum (at a 100% discount nothing is debited)."""
    if wallet.period_cost_micros + cost > MAX_TOTAL:
        return AMOUNT_OUT_OF_RANGE, "team"
    if wallet.balance_micros < debit:  # the balance is the team's: scope "team", as the key check says it
        return BALANCE_EXHAUSTED, "team"
    if wallet.spend_limit_micros is not None and wallet.period_spend_micros + debit > wallet.spend_limit_micros:
        return SPENDING_LIMIT_REACHED, "team"
    for scope, limit in (("key", key_limit), ("member", member_limit)):
        if limit is not None and limit.spend_micros + debit > limit.limit_micros:
            return SPENDING_LIMIT_REACHED, scope
    return None, None


def book(wallet: Any, debit: int, cost: int, key_limit: SpendLimit | None, member_limit: SpendLimit | None) -> None:
    """Spend `debit` (of `cost` before the discount) from the locked wallet's balance and from each
    limit's period spend; add `cost` to the period's."""
    wallet.balance_micros -= debit
    wallet.period_spend_micros += debit
    wallet.period_cost_micros += cost
    for limit in (key_limit, member_limit):
        if limit is not None:
            limit.spend_micros += debit
