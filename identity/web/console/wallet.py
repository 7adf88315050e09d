"""Console page: a team's wallet (DESIGN.md 3.8, 9): balance, "+ Top up", spend this period and the
limit, the discount, the auto top-up and its newest requests, spend and limit per key and per member,
the ledger in pages (newest first); and a member's keys' spend. The teams list shows each team's
wallet in its slot (templates/console/team_wallet.html), from the wallets its page read at once
(identity.wallet_list, in identity/web/console/teams.py).

Amounts are typed in dollars and cents ("12.50") and turned into micro-cents with integers only
(`micros_of`): no float ever holds money. Every change is one domain service run as the signed-in
person (identity.wallets, identity.wallet_controls), which decides who may do it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, g
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from identity import directory, spend, topups, wallet_controls, wallets
from identity.errors import DomainError, InvalidValue
from identity.paging import Window
from identity.web.console.common import (
    FORM_ERROR,
    console_page,
    field,
    form_errors,
    may,
    page_link,
    page_position,
    placed,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_wallet", __name__, url_prefix="/console")
MONEY = re.compile(r"\$?\s*([0-9]{1,10})(?:\.([0-9]{1,2}))?")
MICROS_PER_DOLLAR = 100 * wallets.MICROS_PER_CENT
WHOLE = re.compile(r"-?[0-9]{1,6}")
LEDGER_POSITION = re.compile(r"[0-9]{1,18}")  # an entry id: ASCII digits within a 64-bit integer
LEDGER_PAGE = 25  # ledger entries per page, newest first; each page links to the next older one
REQUESTS_SHOWN = 5  # the auto top-up's newest requests (GET .../wallet/topup-requests pages them all)
SUBJECTS = {"key": wallet_controls.KEY, "member": wallet_controls.MEMBER}
DISCOUNT = "type a whole number from 0 to 100"  # the discount field's words, whichever check refuses it


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


@bp.app_template_filter("micros_as_field")
def micros_as_field(micros: int | None) -> str:
    """An amount as its form field shows it, to be typed back as it is: "1234.50", "" for none."""
    return "" if micros is None else micros_as_dollars(micros).lstrip("-$").replace(",", "")


def _optional_micros(name: str) -> int | None:
    """The amount typed in field `name`, or None when it was left blank (no limit)."""
    text = field(name)
    return micros_of(text, name) if text else None


def _ledger_before() -> int | None:
    """The entry id the ledger's page ends before (`?ledger_before=`), None for the newest page."""
    text = page_position("ledger_before")["ledger_before"]
    return int(text) if LEDGER_POSITION.fullmatch(text) else None


def _billing(session: Session, team_id: str) -> dict[str, Any]:
    """The ledger's page and the auto top-up's newest requests, for those who read billing (the
    services' own rule: identity.spend.ledger, identity.topups.list_requests); none for the others."""
    if not may("billing.read"):
        return {"ledger": None, "requests": None, "ledger_next": None, "names": {}, "in_flight": None}
    rows = spend.ledger(session, g.actor, g.caller.org_id, team_id, limit=LEDGER_PAGE + 1, before=_ledger_before())
    requests = topups.list_requests(session, g.actor, g.caller.org_id, team_id, Window(REQUESTS_SHOWN))
    return {"ledger": rows[:LEDGER_PAGE], "requests": requests[:REQUESTS_SHOWN], "in_flight": topups.in_flight,
            "ledger_next": rows[LEDGER_PAGE - 1].id if len(rows) > LEDGER_PAGE else None,
            "names": spend.ledger_names(session, g.actor, g.caller.org_id, rows[:LEDGER_PAGE])}


def _errors(error: DomainError, slot: str | None) -> dict[str, str]:
    """The error for the page (common.form_errors), in dollars where the service counted micro-cents:
    the admin API's callers type micro-cents, this page's type dollars."""
    errors = form_errors(error, slot)
    spent, named = error.context.get("period_spend_micros"), error.context.get("field")
    if isinstance(spent, int):
        message = (f"That is below this period's spend, {micros_as_dollars(spent)}: type at least that, "
                   "or leave it blank for no limit.")
    elif isinstance(error, InvalidValue) and isinstance(named, str) and named.endswith("_micros"):
        least = "" if "limit" in named else "above $0.00 and "  # a limit may be $0: "stop now"
        message = f"Type an amount {least}at most $10,000,000."
    elif isinstance(error, InvalidValue) and named == "discount_percent":  # the API's field name, not this page's
        message = DISCOUNT
    else:
        return errors
    return {name: message for name in errors}


def _page(team_id: str, *, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    org_id = g.caller.org_id
    with reading() as session:
        found = spend.get_wallet(session, g.actor, org_id, team_id)
        spent = {by: spend.spend(session, g.actor, org_id, team_id, by=by) for by in ("key", "member")}
        by_key, by_member = (spend.with_limits(session, g.actor, org_id, team_id, spent[by], by=by)
                             for by in ("key", "member"))
        may_top_up = wallets.may_top_up(session, g.actor, org_id)
        billing = _billing(session, team_id)
        team_name = directory.team_names(session, g.actor, org_id, [team_id]).get(team_id, team_id)
    errors = placed(errors, {"key-limit-": [row["key_id"] for row in by_key],
                             "member-limit-": [row["user_id"] for row in by_member if row["user_id"]]})
    path = f"/console/teams/{team_id}/wallet"
    return render("console/wallet.html", status=status, errors=errors, title=f"Wallet of {team_name}", nav="teams",
                  wallet=found, team_name=team_name,
                  by_key=by_key, by_member=by_member, may_top_up=may_top_up,
                  full={by: len(rows) >= spend.SPEND_PAGE for by, rows in spent.items()}, spend_page=spend.SPEND_PAGE,
                  path=path, ledger_older=page_link(path, {}, ledger_before=str(billing["ledger_next"] or "")),
                  paged=_ledger_before() is not None, **billing)


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
        return _page(team_id, status=status_of(error), errors=_errors(
            error, "amount" if named in ("amount", "amount_micros") else None))
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", f"Topped up {micros_as_dollars(micros)}.")


@bp.post("/teams/<team_id>/wallet/topup-requests/<request_id>/cancel")
@console_page
def cancel_topup_request(team_id: str, request_id: str) -> Response:
    """Cancel one of the team's top-up requests not yet paid (owners: identity.topups.cancel_request
    decides, refusing the others and one being delivered now); the way out of a team deletion refused
    while the payment hook holds a request."""
    try:
        submit(topups.cancel_request, g.caller.org_id, team_id, request_id)
    except DomainError as error:
        return _page(team_id, status=status_of(error), errors=_errors(error, FORM_ERROR))  # the row has no slot
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", "Top-up request cancelled.")


@bp.post("/teams/<team_id>/wallet/limit")
@console_page
def set_limit(team_id: str) -> Response:
    """Set the team's spending limit for each billing period (blank: no limit)."""
    text = field("limit")
    try:
        limit = micros_of(text, "limit") if text else None
        submit(wallet_controls.configure_wallet, g.caller.org_id, team_id, spend_limit=limit)
    except DomainError as error:
        return _page(team_id, status=status_of(error), errors=_errors(error, "limit"))
    notice = f"Spending limit set to {micros_as_dollars(limit)}." if limit is not None else "Spending limit removed."
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", notice)


@bp.post("/teams/<team_id>/wallet/discount")
@console_page
def set_discount(team_id: str) -> Response:
    """Set the team's discount on usage, a whole percent (identity.wallets.percent: 0 to 100)."""
    text = field("discount")
    try:
        if not WHOLE.fullmatch(text):
            raise InvalidValue(DISCOUNT, field="discount")
        submit(wallet_controls.configure_wallet, g.caller.org_id, team_id, discount_percent=int(text))
    except DomainError as error:
        return _page(team_id, status=status_of(error), errors=_errors(error, "discount"))
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", f"Discount set to {int(text)}%.")


AUTO_FIELDS = {"auto_topup.threshold_micros": "threshold", "auto_topup.amount_micros": "auto_amount"}


def _auto_topup() -> dict[str, int] | None:
    """The auto top-up typed: both amounts, or None when both are blank (off); one alone is refused."""
    threshold, top = _optional_micros("threshold"), _optional_micros("auto_amount")
    if threshold is None and top is None:
        return None
    if threshold is None or top is None:
        raise InvalidValue("type both amounts, or leave both blank to turn auto top-up off",
                           field="threshold" if threshold is None else "auto_amount")
    return {"threshold_micros": threshold, "amount_micros": top}


@bp.post("/teams/<team_id>/wallet/auto-top-up")
@console_page
def set_auto_topup(team_id: str) -> Response:
    """Set the team's auto top-up (below the threshold, ask the payment hook for the amount), or turn it off."""
    try:
        auto = _auto_topup()
        submit(wallet_controls.configure_wallet, g.caller.org_id, team_id, auto_topup=auto)
    except DomainError as error:
        named = error.context.get("field")
        return _page(team_id, status=status_of(error), errors=_errors(
            error, AUTO_FIELDS.get(named, named) if isinstance(named, str) else None))
    notice = "Auto top-up turned off." if auto is None else (
        f"Auto top-up: below {micros_as_dollars(auto['threshold_micros'])}, "
        f"charge {micros_as_dollars(auto['amount_micros'])}.")
    return redirect_with_notice(f"/console/teams/{team_id}/wallet", notice)


@bp.post("/teams/<team_id>/wallet/limits/<any(key, member):subject>/<subject_id>")
@console_page
def set_subject_limit(team_id: str, subject: str, subject_id: str) -> Response:
    """Set one key's or member's spending limit in the team for each period (blank: no limit)."""
    slot = f"{subject}-limit-{subject_id}"
    try:
        limit = micros_of(field("subject_limit"), slot) if field("subject_limit") else None
        submit(wallet_controls.set_subject_limit, g.caller.org_id, team_id, SUBJECTS[subject], subject_id, limit)
    except DomainError as error:
        return _page(team_id, status=status_of(error), errors=_errors(error, slot))
    notice = f"The {subject}'s limit set to {micros_as_dollars(limit)}." if limit is not None else \
        f"The {subject}'s limit removed."
    return redirect_with_notice(f"/console/teams/{team_id}/wallet#{slot}", notice)


@bp.get("/members/<user_id>/spend")
@console_page
def member_spend(user_id: str) -> Response:
    """A member's keys' spend this period, per team and key (kept after the member is removed)."""
    with reading() as session:
        rows = spend.member_spend(session, g.actor, g.caller.org_id, user_id)
    return render("console/member_spend.html", title="Spend", nav="members", rows=rows, user_id=user_id)
