"""Reading the wallets of a list of teams at once (DESIGN.md 3.8): the teams list's wallet column.

One read of the org and one of the wallets, however many teams the page shows. A team's wallet as
one page shows it is `identity.spend.get_wallet`; both build the `WalletView` with `identity.spend.view_of`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity.models import Org
from identity.roles import authorize
from identity.spend import WalletView, view_of
from identity.wallet_models import Wallet
from identity.wallet_periods import period_at


def team_wallets(session: Session, actor: Actor, org_id: str, team_ids: list[str]) -> dict[str, WalletView]:
    """Return the wallet of each of the org's `team_ids` as of now (an empty one when never used), by team id."""
    authorize(actor, "usage.read", org_id=org_id)
    start, end = period_at(session.get_one(Org, org_id).created_at, clock.now())
    found = {wallet.team_id: wallet for wallet in session.scalars(
        select(Wallet).where(Wallet.org_id == org_id, Wallet.team_id.in_(team_ids)))}
    return {team_id: view_of(team_id, found.get(team_id), start, end) for team_id in team_ids}
