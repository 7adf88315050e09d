"""Arrival: `/`, the sign-in page (work email or the org's slug), and `/console` itself."""

from __future__ import annotations

from flask import Blueprint, redirect
from werkzeug.wrappers import Response

from identity.web.console.common import render, signed_in_caller

bp = Blueprint("console_arrival", __name__)
LANDING = "/console/teams"


@bp.get("/")
def sign_in_page() -> Response:
    """Show the sign-in page; a signed-in person goes straight to the console."""
    if signed_in_caller() is not None:
        return redirect(LANDING, 303)
    return render("console/sign_in.html", title="Sign in")


@bp.get("/console")
@bp.get("/console/")
def console_home() -> Response:
    return redirect(LANDING, 303)
