"""Console page: a team's wallet (DESIGN.md 3.8, 9): balance, "+ Top up", spend this period and the
limit, spend per key and per member; and a member's keys' spend. The teams list shows each team's
wallet in its slot (templates/console/team_wallet.html), from the wallets its page read at once
(identity.wallet_list, in identity/web/console/teams.py).

Amounts are typed in dollars and cents ("12.50") and turned into micro-cents with integers only
(`micros_of`): no float ever holds money. Every change is one domain service run as the signed-in
person (identity.wallets, identity.wallet_controls), which decides who may do it.
"""

from __future__ import annotations

import re

from flask import Blueprint, g
from werkzeug.wrappers import Response

from identity import spend, wallet_controls, wallets
from identity.errors import DomainError, InvalidValue
from identity.web.console.common import (
    console_page,
    field,
    form_errors,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_wallet", __name__, url_prefix="/console")
MONEY = re.compile(r"\$?\s*([0-9]{1,10})(?:\.([0-9]{1,2}))?")
MICROS_PER_DOLLAR = 100 * wallets.MICROS_PER_CENT


def micros_of(text: str, name: str) -> int:
    """Return a dollar amount typed as "12" or "12.5" or "$12.50" in micro-cents; refuse anything else."""
    found = MONEY.fullmatch(text.strip())
    if not found:
        raise InvalidValue("type an amount in dollars and cents, like 25 or 12.50", field=name)
    dollars, cents = found.group(1), (found.group(2) or "").ljust(2, "0")
    return (int(dollars) * 100 + int(cents)) * wallets.MICROS_PER_CENT


@bp.app_template_filter("micros_as_dollars")
def micros_as_dollars(micros: int | None) -> str:
    """Render micro-cents as dollars: "$12.34", and the fraction of a cent when there is one (the
    console's `dollars(cents)` is for whole cents: seats)."""
    if micros is None:
        return "—"
    sign, value = ("-" if micros < 0 else ""), abs(int(micros))
    whole, rest = divmod(value, MICROS_PER_DOLLAR)
    fraction = f"{rest:08d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole:,}.{fraction}"




def _page(team_id: str, *, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    with reading() as session:
        found = spend.get_wallet(session, g.actor, g.caller.org_id, team_id)
        by_key = spend.spend(session, g.actor, g.caller.org_id, team_id, by="key")
        by_member = spend.spend(session, g.actor, g.caller.org_id, team_id, by="member")
        may_top_up = wallets.may_top_up(session, g.actor, g.caller.org_id)
    return render("console/wallet.html", status=status, errors=errors, title="Wallet", nav="teams", wallet=found,
                  by_key=by_key, by_member=by_member, may_top_up=may_top_up, spend_page=spend.SPEND_PAGE)


@bp.get("/teams/<team_id>/wallet")
@console_page
def wallet_page(team_id: str) -> Response:
    return _page(team_id)


@bp.post("/teams/<team_id>/wallet/top-up")
@console_page
def top_up(team_id: str) -> Response:
    """Credit the team with the typed amount, under the typed reference."""
    try:
        micros = micros_of(field("amount"), "amount")
        submit(wallets.top_up, g.caller.org_id, team_id, micros, field("reference"))
    except DomainError as error:
        named = error.context.get("field")
        return _page(team_id, status=status_of(error), errors=form_errors(
            error, "amount" if named in ("amount", "amount_micros") else None))
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", f"Topped up {micros_as_dollars(micros)}.")


@bp.post("/teams/<team_id>/wallet/limit")
@console_page
def set_limit(team_id: str) -> Response:
    """Set the team's spending limit for each billing period (blank: no limit)."""
    text = field("limit")
    try:
        limit = micros_of(text, "limit") if text else None
        submit(wallet_controls.configure_wallet, g.caller.org_id, team_id, spend_limit=limit)
    except DomainError as error:
        return _page(team_id, status=status_of(error), errors=form_errors(error, "limit"))
    notice = f"Spending limit set to {micros_as_dollars(limit)}." if limit is not None else "Spending limit removed."
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", notice)


@bp.get("/members/<user_id>/spend")
@console_page
def member_spend(user_id: str) -> Response:
    """A member's keys' spend this period, per team and key (kept after the member is removed)."""
    with reading() as session:
        rows = spend.member_spend(session, g.actor, g.caller.org_id, user_id)
    return render("console/member_spend.html", title="Spend", nav="members", rows=rows, user_id=user_id)
