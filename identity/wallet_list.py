"""Reading the wallets of a list of teams at once (DESIGN.md 3.8): the teams list's wallet column.

One read of the org and one of the wallets, however many teams the page shows. A team's wallet as
one page shows it is `identity.spend.get_wallet`; both build the same `WalletView` from the row.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity.models import Org
from identity.roles import authorize
from identity.spend import WalletView
from identity.wallet_models import Wallet
from identity.wallets import live_refusal, period_at


def team_wallets(session: Session, actor: Actor, org_id: str, team_ids: list[str]) -> dict[str, WalletView]:
    """Return the wallet of each of the org's `team_ids` as of now (an empty one when never used), by team id."""
    authorize(actor, "usage.read", org_id=org_id)
    start, end = period_at(session.get_one(Org, org_id).created_at, clock.now())
    found = {wallet.team_id: wallet for wallet in session.scalars(
        select(Wallet).where(Wallet.org_id == org_id, Wallet.team_id.in_(team_ids)))}
    return {team_id: view_of(team_id, found.get(team_id), start, end) for team_id in team_ids}


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
