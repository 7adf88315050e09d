"""Console page: the invitation's link, `/invite/<token>`: what the invitee is invited to, with
Accept and Decline buttons.

A GET changes nothing (mail scanners follow links). The buttons POST with a form token bound to a
cookie the page sets (saml.csrf): nobody is signed in yet, and another site must not answer for
the invitee. Accepting is members.accept_invitation, as the admin API's accept is.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.wrappers import Response

from identity import invitations, members
from identity.errors import DomainError
from identity.models import Org, Team
from identity.service import run
from identity.web.api.common import request_actor
from identity.web.console.common import field, reading, render
from identity.web.context import cookie_path, database, secure_cookies
from saml import csrf

bp = Blueprint("console_invitation", __name__)
PURPOSE = "invitation"  # the form token's purpose (saml.csrf)
UNUSABLE = "This invitation link is unknown, expired or already used. Ask whoever invited you for a new one."


def _page(title: str, message: str, *, status: int = 200, **values: Any) -> Response:
    return render("console/invitation.html", status=status, title=title, message=message, **values)


@bp.get("/invite/<token>")
def invitation_page(token: str) -> Response:
    """Show the invitation (org, role, team) with Accept and Decline."""
    try:
        with reading() as session:
            invitation = invitations.check_pending(session, token)
            org = session.get_one(Org, invitation.org_id)
            team = session.get(Team, invitation.team_id) if invitation.team_id else None
    except DomainError:
        return _page("Invitation", UNUSABLE, status=400)
    cookie = request.cookies.get(csrf.COOKIE) or csrf.new_form_cookie()
    response = _page("Invitation", f"You are invited to join {org.name}.", ask=True,
                     csrf_token=csrf.token(current_app.config["SECRET_KEY"], PURPOSE, cookie),
                     email=invitation.email, role=invitation.role, team=team.name if team else None)
    response.set_cookie(csrf.COOKIE, cookie, max_age=3600, path=cookie_path(invitations.LINK_PATH), httponly=True,
                        samesite="Strict", secure=secure_cookies())
    return response


@bp.post("/invite/<token>")
def answer_invitation(token: str) -> Response:
    """Accept or decline from the page's own form; nothing else is taken as an answer."""
    if not (csrf.same_origin(str(current_app.config["BASE_URL"]), request.headers) and csrf.valid(
            current_app.config["SECRET_KEY"], PURPOSE, request.cookies.get(csrf.COOKIE), field(csrf.FIELD))):
        return _page("Invitation", "This form did not come from the invitation's page. Open the link again.",
                     status=403)
    answer = field("answer")
    if answer not in ("accept", "decline"):
        return _page("Invitation", "Choose Accept or Decline.", status=400)
    try:
        with database().transaction() as session:
            holder = members.invitation_holder(session, token, request_actor)  # records an expiry first, on its own
        if answer == "decline":
            run(database(), holder, invitations.decline, token)
            return _page("Invitation declined", "You have declined the invitation.")
        run(database(), holder, members.accept_invitation, token)
    except DomainError as error:
        return _page("Invitation", "This invitation could not be answered: " + error.message,
                     status=403 if error.code == "seat_cap_reached" else 400)
    return _page("Welcome", "You have joined the organization. Sign in to open the console.", signed_up=True)
