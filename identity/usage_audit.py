"""The audit of usage debits (DESIGN.md 3.8, identity.usage): one `wallet.usage_recorded` event per org
per call summarising its debits, and a refusal remembered on the wallet (or the key's or member's
limit) for the key check, audited once when it becomes so.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.orm import Session

from audit import Actor, record
from audit.log import Target
from identity.actions import Action
from identity.wallet_models import SpendLimit
from identity.wallet_periods import BALANCE_EXHAUSTED
from identity.wallets import Locked, WalletRow, team_target

# A batch up to this size names its request ids in its audit event (else the first and the last).
SUMMARY_IDS = 100


def summarise(session: Session, actor: Actor, locked: dict[str, Locked[WalletRow]],
               rows: list[dict[str, Any]]) -> None:
    """One `wallet.usage_recorded` event per org of the call: its rows' count, cost and debit, and per team
    the debit and the balance after (what `identity billing check` adds up against the ledger)."""
    balances = {team_id: found.wallet.balance_micros for team_id, found in locked.items()}
    for org_id, target, changes in summaries(rows, balances):
        record(session, actor, Action.WALLET_USAGE_RECORDED, target, changes, org_id=org_id)


def summaries(rows: list[dict[str, Any]], balances: dict[str, int]) -> list[tuple[str, Target, dict[str, Any]]]:
    """Each org's `wallet.usage_recorded` event for the usage `rows` of a call, as (org id, target,
    changes), the teams' balances after the call being `balances` (team id -> micro-cents)."""
    by_org: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_org[row["org_id"]].append(row)
    events = []
    for org_id, mine in by_org.items():
        teams: dict[str, dict[str, int]] = {}
        for row in mine:
            entry = teams.setdefault(row["team_id"], {"count": 0, "debited_micros": 0})
            entry["count"] += 1
            entry["debited_micros"] -= row["amount_micros"]
        for team_id, entry in teams.items():
            entry["balance_micros"] = balances[team_id]
        ids = [row["request_id"] for row in mine]
        changes = {"count": len(mine), "debited_micros": sum(t["debited_micros"] for t in teams.values()),
                   "cost_micros": sum(row["cost_micros"] for row in mine), "teams": teams,
                   "request_ids": ids if len(ids) <= SUMMARY_IDS else [ids[0], ids[-1]]}
        target = team_target(mine[0]["team_id"]) if len(teams) == 1 else Target("org", org_id, org_id)
        events.append((org_id, target, changes))
    return events


def remember_refusal(session: Session, actor: Actor, locked: Any, code: str, scope: str | None,
                      subject: SpendLimit | None) -> None:
    """Mark the wallet (or the key's or member's limit) refused, audited once when it becomes so."""
    wallet = locked.wallet
    if scope in ("key", "member") and subject is not None:
        if subject.refused_period_start == locked.period_start:
            return
        subject.refused_period_start = locked.period_start
    elif wallet.refusal == code and (code == BALANCE_EXHAUSTED or wallet.refused_period_start == locked.period_start):
        return
    else:
        wallet.refusal, wallet.refused_period_start = code, locked.period_start
    record(session, actor, Action.WALLET_SPEND_REFUSED, team_target(wallet.team_id),
           {"code": code, "scope": scope or "team", "subject_id": subject.subject_id if subject else None,
            "balance_micros": wallet.balance_micros, "period_spend_micros": wallet.period_spend_micros,
            "resets_at": locked.period_end.isoformat()}, org_id=wallet.org_id, outcome="refused")
