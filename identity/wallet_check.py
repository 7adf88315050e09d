"""`identity billing check`, wallets' part: every balance is its ledger's sum, and the ledger agrees
with the audit log's summaries of it (DESIGN.md 3.8)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from audit.models import AuditEvent, AuditHead
from identity.actions import Action
from identity.wallet_models import Wallet, WalletEntry
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
        period = -int(session.scalar(select(func.coalesce(func.sum(WalletEntry.amount_micros), 0)).where(
            WalletEntry.team_id == team_id, WalletEntry.kind == USAGE,
            WalletEntry.period_start == wallet.period_start)) or 0)
        if period != wallet.period_spend_micros:
            problems.append(f"team {team_id}: period spend {wallet.period_spend_micros} but the ledger holds {period}")
        if wallet.spend_limit_micros is not None and wallet.period_spend_micros > wallet.spend_limit_micros:
            problems.append(f"team {team_id}: period spend {wallet.period_spend_micros} passes the limit "
                            f"{wallet.spend_limit_micros}")
    bad = session.scalar(select(func.count()).where(
        WalletEntry.org_id == org_id, ((WalletEntry.kind == USAGE) & (WalletEntry.amount_micros > 0))
        | (WalletEntry.kind.not_in([USAGE, *CREDIT_KINDS]))))
    if bad:
        problems.append(f"{bad} ledger rows of an unknown kind, or usage that credits")
    return problems + _check_summaries(session, org_id, {team: usage for team, (_, usage) in sums.items()})


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
