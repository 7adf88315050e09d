"""Console page: Audit log (a placeholder until its page is built)."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_audit", __name__, url_prefix="/console")


@bp.get("/audit")
@console_page
def audit_page() -> Response:
    """Show the Audit log page."""
    return render("console/placeholder.html", title="Audit log", nav="audit")
