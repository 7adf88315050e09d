"""Console page: Identity provider (a placeholder until its page is built)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_idp", __name__, url_prefix="/console")


@bp.get("/idp")
@console_page
def idp_page() -> Response:
    """Show the Identity provider page."""
    return render("console/placeholder.html", title="Identity provider", nav="idp")
