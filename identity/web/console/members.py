"""Console page: Members."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_members", __name__, url_prefix="/console")


@bp.get("/members")
@console_page
def members_page() -> Response:
    """Show the Members page."""
    return render("console/placeholder.html", title="Members", nav="members")
