"""`identity billing check`, wallets' part: every balance is its ledger's sum, each period's spend and
cost are its ledger's usage, and the ledger agrees with the audit log's summaries of it (DESIGN.md 3.8)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from audit.models import AuditEvent, AuditHead
from identity.actions import Action
from identity.wallet_models import UsageTotal, Wallet, WalletEntry
from identity.wallets import CREDIT_KINDS, USAGE


def check_wallets(session: Session, org_id: str) -> list[str]:
    """Return every disagreement between the org's wallets, their ledgers and the audit log."""
    problems: list[str] = []
    sums = {team: (int(total), int(usage)) for team, total, usage in session.execute(
        select(WalletEntry.team_id, func.sum(WalletEntry.amount_micros),
               func.sum(case((WalletEntry.kind == USAGE, WalletEntry.amount_micros), else_=0)))
        .where(WalletEntry.org_id == org_id).group_by(WalletEntry.team_id))}
    wallets = {w.team_id: w for w in session.scalars(select(Wallet).where(Wallet.org_id == org_id))}
    for team_id in sorted(set(sums) | set(wallets)):
        wallet, (total, _) = wallets.get(team_id), sums.get(team_id, (0, 0))
        if wallet is None:
            problems.append(f"team {team_id}: {total} micro-cents in the ledger but no wallet")
            continue
        if wallet.balance_micros != total:
            problems.append(f"team {team_id}: balance {wallet.balance_micros} but the ledger sums to {total}")
        if wallet.balance_micros < 0:
            problems.append(f"team {team_id}: balance {wallet.balance_micros} is below zero")
        problems += _check_period(session, wallet)
        if wallet.spend_limit_micros is not None and wallet.period_spend_micros > wallet.spend_limit_micros:
            problems.append(f"team {team_id}: period spend {wallet.period_spend_micros} passes the limit "
                            f"{wallet.spend_limit_micros}")
    bad = session.scalar(select(func.count()).where(
        WalletEntry.org_id == org_id, ((WalletEntry.kind == USAGE) & (WalletEntry.amount_micros > 0))
        | (WalletEntry.kind.not_in([USAGE, *CREDIT_KINDS]))))
    if bad:
        problems.append(f"{bad} ledger rows of an unknown kind, or usage that credits")
    return problems + _check_totals(session, org_id) + _check_summaries(
        session, org_id, {team: usage for team, (_, usage) in sums.items()})


def _check_period(session: Session, wallet: Wallet) -> list[str]:
    """The wallet's period spend and period cost (before the discount: the total MAX_TOTAL bounds, so one
    below the ledger's would let usage totals pass it) are its ledger's usage in its current period."""
    sums = session.execute(select(
        func.coalesce(func.sum(WalletEntry.amount_micros), 0), func.coalesce(func.sum(WalletEntry.cost_micros), 0))
        .where(WalletEntry.team_id == wallet.team_id, WalletEntry.kind == USAGE,
               WalletEntry.period_start == wallet.period_start)).one()
    kept = {"spend": (wallet.period_spend_micros, -int(sums[0] or 0)), "cost": (wallet.period_cost_micros,
                                                                                int(sums[1] or 0))}
    return [f"team {wallet.team_id}: period {name} {held} but the ledger holds {ledger}"
            for name, (held, ledger) in kept.items() if held != ledger]


def _check_totals(session: Session, org_id: str) -> list[str]:
    """The usage totals the debits keep (per period and key, per period and member) are the ledger's sums."""
    e, t, problems = WalletEntry, UsageTotal, list[str]()
    for kind, column in (("key", func.coalesce(e.key_id, "")), ("member", func.coalesce(e.user_id, ""))):
        ledger = {(team, period.replace(tzinfo=None), subject): (-int(spent or 0), int(cost or 0), int(n))
                  for team, period, subject, spent, cost, n in session.execute(
                      select(e.team_id, e.period_start, column, func.sum(e.amount_micros),
                             func.coalesce(func.sum(e.cost_micros), 0), func.count())
                      .where(e.org_id == org_id, e.kind == USAGE).group_by(e.team_id, e.period_start, column))}
        kept = {(row.team_id, row.period_start.replace(tzinfo=None), row.subject_id):
                (row.spend_micros, row.cost_micros, row.requests)
                for row in session.scalars(select(t).where(t.org_id == org_id, t.subject_type == kind))}
        problems += [f"team {key[0]}: usage totals by {kind} {key[2] or '(none)'} in the period of {key[1]} are "
                     f"{kept.get(key)} but the ledger sums to {ledger.get(key)}"
                     for key in sorted(set(ledger) | set(kept)) if ledger.get(key) != kept.get(key)]
    return problems


def _check_summaries(session: Session, org_id: str, usage: dict[str, int]) -> list[str]:
    """Each team's `wallet.usage_recorded` events sum to its usage rows (unless retention purged events)."""
    head = session.get(AuditHead, org_id)
    if head is not None and head.purged_count:
        return []
    summarised: dict[str, int] = defaultdict(int)
    for (changes,) in session.execute(select(AuditEvent.changes).where(
            AuditEvent.org_id == org_id, AuditEvent.action == Action.WALLET_USAGE_RECORDED)):
        for team_id, team in changes.get("teams", {}).items():
            summarised[team_id] -= int(team.get("debited_micros", 0))
    return [f"team {team}: usage rows sum to {usage.get(team, 0)} but the audit log summarises {summarised[team]}"
            for team in sorted(set(usage) | set(summarised)) if usage.get(team, 0) != summarised[team]]
