"""Console page: Keys."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from identity.web.console.common import console_page, render

bp = Blueprint("console_keys", __name__, url_prefix="/console")


@bp.get("/keys")
@console_page
def keys_page() -> Response:
    """Show the Keys page."""
    return render("console/placeholder.html", title="Keys", nav="keys")
