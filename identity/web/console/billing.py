"""Console page: Billing (a placeholder until its page is built)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_billing", __name__, url_prefix="/console")


@bp.get("/billing")
@console_page
def billing_page() -> Response:
    """Show the Billing page."""
    return render("console/placeholder.html", title="Billing", nav="billing")
