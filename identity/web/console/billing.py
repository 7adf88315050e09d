"""Console page: seats and billing (DESIGN.md 3.4): seats included, purchased and used, the cost of
the next seat, the seat ledger, and the seat plan (owners edit it; admins read it).

The same services as the admin API (`GET /seats`, `GET /seat-charges`, `PATCH /settings`):
identity.directory reads, identity.orgs.update_settings decides and audits `org.settings_changed`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, g, request
from werkzeug.wrappers import Response

from identity import charges, directory, orgs
from identity.errors import DomainError, InvalidValue
from identity.web.api.query import after_position, cursor
from identity.web.console.common import (
    console_page,
    dollars,
    field,
    form_errors,
    may,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_billing", __name__, url_prefix="/console")
bp.add_app_template_filter(dollars, "money")  # the invite dialog's rendering of cents
LEDGER_PAGE = 50
PRICE = re.compile(r"\$?\s*([0-9]{1,9})(?:\.([0-9]{1,2}))?")


@bp.get("/billing")
@console_page
def billing_page() -> Response:
    """Show seats, the ledger and the seat plan (owners and admins; others are told why not)."""
    if not may("billing.read"):  # the rule the domain asks (identity.roles); the reads refuse anyway
        return _not_for_you()
    return _render()


def _not_for_you() -> Response:
    return render("console/refused.html", status=403, title="Seats and billing", nav="billing",
                  message="Only the org's owners and admins see seats and billing.")


def _render(status: int = 200, errors: dict[str, str] | None = None, form: dict[str, str] | None = None) -> Response:
    after = after_position() if request.method == "GET" else None  # its page size is its own (LEDGER_PAGE)
    with reading() as session:
        ledger = charges.seat_charges(session, g.actor, g.caller.org_id, limit=LEDGER_PAGE, after=after)
        settings = directory.org_settings(session, g.actor, g.caller.org_id)
    plan = form or {"included_seats": str(settings["included_seats"]),
                    "seat_price": f"{Decimal(int(str(settings['seat_price_cents']))) / 100:.2f}",
                    "max_seats": "" if settings["max_seats"] is None else str(settings["max_seats"])}
    return render("console/billing.html", status=status, errors=errors, title="Seats and billing", nav="billing",
                  seats=ledger.cycle["seats"], cycle=ledger.cycle, charges=ledger.charges,
                  next_page=cursor(ledger.next), plan=plan)


@bp.post("/billing/plan")
@console_page
def change_plan() -> Response:
    """Save the seat plan (owners: identity.orgs.update_settings refuses anyone else, and audits it)."""
    form = {name: field(name) for name in ("included_seats", "seat_price", "max_seats")}
    try:
        submit(orgs.update_settings, g.caller.org_id, _plan_changes(form))
    except DomainError as error:
        if not may("billing.read"):
            return _not_for_you()
        errors = {("seat_price" if name == "seat_price_cents" else name): message
                  for name, message in form_errors(error).items()}
        return _render(status_of(error), errors, form)
    return redirect_with_notice("/console/billing", "Seat plan saved.")


def _plan_changes(form: dict[str, str]) -> dict[str, Any]:
    """The settings a plan form asks for, as whole numbers; what is not one is refused at its field."""
    return {"included_seats": _whole(form["included_seats"], "included_seats", "Included seats"),
            "seat_price_cents": _cents(form["seat_price"]),
            "max_seats": None if not form["max_seats"] else _whole(form["max_seats"], "max_seats", "Seat cap")}


def _whole(text: str, name: str, label: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise InvalidValue(f"{label} must be a whole number, such as 3", field=name)
    return int(text)


def _cents(text: str) -> int:
    found = PRICE.fullmatch(text)
    try:
        if found is None:
            raise InvalidOperation
        return int(Decimal(f"{found.group(1)}.{found.group(2) or '0'}") * 100)
    except InvalidOperation:
        raise InvalidValue("Seat price must be an amount in dollars, such as 10 or 12.50",
                           field="seat_price") from None
