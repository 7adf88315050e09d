"""A usage debit of one record in two statements (PostgreSQL), when it is nothing but a debit (DESIGN.md 3.8).

The gateway posts one record per model request, so `POST /api/v1/usage` of one record is the
service's busiest write (issue 18). `identity.usage.record_usage` decides it in five statements
through the ORM session (the credential; the key with its wallet locked; the ledger row, totals and
wallet; the audit head locked at commit; the event). Here the same debit is two on PostgreSQL, on the
driver's cursor (identity.driver_reads), in one transaction:

1. one read: the gateway credential (by its prefix and the hash of what was presented, so that a
   wrong one matches no row and locks nothing), the key, its team's wallet locked (`FOR UPDATE`) with
   the team's row (`FOR KEY SHARE`, as every wallet lock), the ledger row reserved (`_RESERVED`: none
   when the request id is booked, and then nothing is locked further), then the org's audit head
   locked. The wallet is locked inside a materialized WITH and the head on a row that joins the
   reserved one, so the order is wallet, reservation, head whatever plan PostgreSQL picks: every
   other writer takes the head last (audit.log), so none holds the head while waiting for a wallet,
   and this read never waits on another's booking while holding the head;
2. one write: the reserved ledger row set whole, the key's and member's running totals, the wallet,
   the audit event and the head moved to it.

The decision is the full path's, from the same functions: the discount (`usage.discounted`), the
refusal (`usage.debit_refusal`), the booking (`usage.book`), the ledger row (`usage.entry_row`),
the event's summary (`usage_audit.summaries`), its chaining (`audit.log.chained`), the answer
(`usage.key_remaining`). Whatever else a debit would have to do makes `quick_debit` answer None,
having written nothing, and the caller takes the full path, which reads everything again and
decides it: a credential or key not found (401, 404), a request id already booked (`duplicate`), a
refusal (remembered on the wallet, audited), the team's key or member limits (`has_subject_limits`),
a refusal already remembered on the wallet, a period that has turned, an auto top-up due, a wallet not made
yet, an audit head without its time. On SQLite, where a write transaction holds the whole database
from its BEGIN IMMEDIATE and no statement is a round trip, the same read without the reservation (the
booking read beside it), then one statement per table written, on the driver's cursor too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, literal, null, select, true, update
from sqlalchemy.dialects import postgresql, sqlite

from audit import clock, observers
from audit.log import HEADS, INSERT_EVENT, MOVE_HEAD, Head, chained, event_item, moving_head
from identity import gateway, tokens, topups, usage_audit
from identity.actions import Action
from identity.db import Database
from identity.driver_reads import DriverRead
from identity.model_base import bound_columns
from identity.models import ApiKey, GatewayCredential, Team
from identity.usage import (
    ADD_TOTALS_ONE,
    Outcome,
    UsageRecord,
    adding_totals,
    book,
    debit_refusal,
    discounted,
    entry_row,
    key_remaining,
    usage_totals,
)
from identity.wallet_models import UsageTotal
from identity.wallet_periods import period_at
from identity.wallets import ENTRIES, ORGS, SAVE_WALLET, TEAM_KEY_SHARE, USAGE, WALLETS, WalletRow, saving

_KEYS_T = cast(Table, ApiKey.__table__)
_CREDENTIALS = cast(Table, GatewayCredential.__table__)
_TEAMS = cast(Table, Team.__table__)
_LOCKED = (select(*WALLETS.c, ORGS.c.created_at.label("org_created"), _KEYS_T.c.user_id.label("key_user_id"),
                  _CREDENTIALS.c.id.label("gateway_id"), _CREDENTIALS.c.name.label("gateway_name"),
                  _CREDENTIALS.c.secret_hash.label("gateway_hash"))
           .select_from(_CREDENTIALS.join(_KEYS_T, _KEYS_T.c.id == bindparam("key_id"))
                        .join(WALLETS, and_(WALLETS.c.team_id == _KEYS_T.c.team_id,
                                            WALLETS.c.org_id == _KEYS_T.c.org_id))
                        .join(ORGS, ORGS.c.id == WALLETS.c.org_id).join(_TEAMS, _TEAMS.c.id == WALLETS.c.team_id))
           .where(_CREDENTIALS.c.prefix == bindparam("prefix"), _CREDENTIALS.c.secret_hash == bindparam("digest"),
                  _CREDENTIALS.c.revoked_at.is_(None), ORGS.c.deleted_at.is_(None))
           .with_for_update(of=WALLETS).suffix_with(TEAM_KEY_SHARE, dialect="postgresql")
           .cte("locked").prefix_with("MATERIALIZED"))
_HEAD = (HEADS.c.seq.label("head_seq"), HEADS.c.hash.label("head_hash"), HEADS.c.last_at.label("head_last_at"))
# On PostgreSQL the read also reserves the request id: the debit's ledger row, inserted after the
# wallet's lock and before the head's (the outer SELECT locks the head on a row that joins it), with
# what is known before the debit is decided (its amount 0 until the write sets the row whole). A row
# of that request id already committed, or committed by a transaction it waited for, makes none: no
# row is answered and no head locked, and the full path answers `duplicate`. So the one wait on
# another transaction's booking is taken holding this team's wallet alone: that transaction takes the
# org's audit head at its commit, which a wait holding the head would deadlock with.
_RESERVED = (postgresql.insert(ENTRIES).from_select(
    ["org_id", "team_id", "kind", "amount_micros", "key_id", "user_id", "request_id", "period_start", "actor_type",
     "actor_id", "created_at"],
    select(_LOCKED.c.org_id, _LOCKED.c.team_id, literal(USAGE), literal(0), bindparam("key_id"),
           _LOCKED.c.key_user_id, bindparam("request_id"), _LOCKED.c.period_start, literal(""), literal(""),
           bindparam("now", type_=ENTRIES.c.created_at.type)))
    .on_conflict_do_nothing().returning(ENTRIES.c.id).cte("reserved"))
READS = {
    "postgresql": DriverRead(select(_LOCKED, *_HEAD, null().label("booked"), _RESERVED.c.id.label("reserved"))
                             .select_from(_LOCKED.join(_RESERVED, true())
                                          .join(HEADS, HEADS.c.org_id == _LOCKED.c.org_id))
                             .with_for_update(of=HEADS)),
    # SQLite: its writer holds the database; the booking read beside the rest.
    "sqlite": DriverRead(select(_LOCKED, *_HEAD, ENTRIES.c.id.label("booked"), null().label("reserved"))
                         .join(HEADS, HEADS.c.org_id == _LOCKED.c.org_id)
                         .outerjoin(ENTRIES, ENTRIES.c.request_id == bindparam("request_id")))}
_TOTALS = cast(Table, UsageTotal.__table__)
# The write, by dialect: its statements in order, the first answering the ledger row's id. On
# PostgreSQL one statement: the reserved row set whole, the other parts data-modifying WITHs (which
# PostgreSQL runs whether or not anything reads them). On SQLite (no such WITHs) one statement per
# table, no round trips; its INSERT answers no id when the request id is booked, and nothing stays.
WRITES = {
    "postgresql": (DriverRead(update(ENTRIES).where(ENTRIES.c.id == bindparam("reserved_id"))
                              .values(bound_columns(ENTRIES, "e_")).returning(ENTRIES.c.id).add_cte(
        ADD_TOTALS_ONE.cte("new_totals"), SAVE_WALLET.cte("saved_wallet"), MOVE_HEAD.cte("moved_head"),
        INSERT_EVENT.cte("new_event"))),),
    "sqlite": (DriverRead(sqlite.insert(ENTRIES).values(bound_columns(ENTRIES, "e_")).on_conflict_do_nothing()
                          .returning(ENTRIES.c.id)),
               DriverRead(adding_totals(sqlite.insert(_TOTALS).values(
                   [bound_columns(_TOTALS, "t0_"), bound_columns(_TOTALS, "t1_")]))),
               DriverRead(SAVE_WALLET), DriverRead(MOVE_HEAD), DriverRead(INSERT_EVENT))}
_WIDTH = len(WALLETS.columns)


class Caller(NamedTuple):
    """The request a debit came in: its ids, address and user agent, for its audit event."""

    request_id: str | None
    ip: str | None
    user_agent: str | None
    client_request_id: str | None = None


class _HandOver(Exception):
    """Raised inside the transaction to roll it back and leave the debit to the full path."""


def quick_debit(db: Database, credential: str, item: UsageRecord, caller: Caller) -> Outcome | None:
    """Debit `item` in two statements and answer its outcome, or answer None having written nothing
    when it is anything but a debit the wallet covers (the caller then asks `usage.record_usage`)."""
    prefix = tokens.split_prefix(credential or "")
    if prefix is None or not prefix.startswith("gw_"):
        return None
    try:
        with db.keyed_write() as conn:
            rows = READS[conn.dialect.name].rows(conn, key_id=item.key_id, prefix=prefix,
                                                 digest=tokens.digest(credential), request_id=item.request_id,
                                                 now=clock.now())  # the reservation's; the write sets the row whole
            # The time of the debit is read once the wallet is locked, as the full path's (locked_rows): a
            # debit that waited across the period's end is the new period's.
            done = _decide(rows, credential, item, caller, clock.now())
            if done is None:
                raise _HandOver
            outcome, params, event = done
            first, *rest = WRITES[conn.dialect.name]
            if not first.rows(conn, **params):  # the request id was booked since: the full path says `duplicate`
                raise _HandOver
            for statement in rest:
                statement.rows(conn, **params)
    except _HandOver:
        return None
    observers.announce([event])
    return outcome


def _decide(rows: list[Any], credential: str, item: UsageRecord, caller: Caller, now: dt.datetime) -> tuple[
        Outcome, dict[str, Any], dict[str, Any]] | None:
    """The outcome, the write's parameters and the audit event of a debit the locked wallet allows; else None."""
    if not rows or not tokens.matches(credential, rows[0].gateway_hash):
        return None
    row = rows[0]
    wallet = WalletRow(*row[:_WIDTH])
    start, end = period_at(row.org_created, now)
    if row.booked is not None or wallet.period_start != start or wallet.refusal or wallet.has_subject_limits or \
            (row.head_last_at is None and row.head_seq):
        return None
    debit = discounted(item.cost_micros, wallet.discount_percent)
    if debit_refusal(wallet, debit, item.cost_micros, None, None)[0] is not None:
        return None
    book(wallet, debit, item.cost_micros, None, None)
    if topups.due(wallet):
        return None
    wallet.updated_at = now
    actor = gateway.credential_actor(row.gateway_id, row.gateway_name).with_request(
        caller.request_id, caller.ip, caller.user_agent, client_request_id=caller.client_request_id)
    entry = entry_row(actor, wallet, start, item, row.key_user_id, debit, now)
    [(org_id, target, changes)] = usage_audit.summaries([entry], {wallet.team_id: wallet.balance_micros})
    event = event_item(actor, Action.WALLET_USAGE_RECORDED, target, changes, org_id=org_id)
    [chained_event] = chained(Head(row.head_seq, row.head_hash, row.head_last_at), [event])
    totals = usage_totals([entry])
    params = {**{f"e_{name}": value for name, value in entry.items()},
              **{f"t{n}_{name}": value for n, total in enumerate(totals) for name, value in total.items()},
              **saving(wallet), **moving_head(org_id, chained_event), "reserved_id": row.reserved}
    outcome = Outcome(item.request_id, "debited", wallet.team_id, debited_micros=debit,
                      balance_micros=wallet.balance_micros, remaining_micros=key_remaining(wallet, None, None),
                      resets_at=end)
    return outcome, params, event
