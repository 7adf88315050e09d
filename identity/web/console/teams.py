"""Console page: Teams."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_teams", __name__, url_prefix="/console")


@bp.get("/teams")
@console_page
def teams_page() -> Response:
    """Show the Teams page."""
    return render("console/placeholder.html", title="Teams", nav="teams")
