"""Admin API: the signed-in browser session itself (`GET /api/v1/session`), and its CSRF token.

A page of ours reads this once and sends `csrf_token` back in the `X-CSRF-Token` header of every
write it makes with the session cookie (identity.web.api.common). Another site cannot read it:
the answer carries no CORS headers, and a cross-site request with the cookie is refused.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from identity.web.api.common import SESSION, adopt, authenticated, csrf_token, session_token

bp = adopt(Blueprint("api_browser", __name__, url_prefix="/api/v1"))


@bp.get("/session")
@authenticated(scope=None, ways=(SESSION,))
def current_session() -> Response:
    """Tell whom the session speaks for (user, org, role) and give its CSRF token."""
    caller, token = g.caller, session_token()
    response = jsonify({"user": {"id": caller.user_id, "userName": caller.user_name},
                        "org": {"id": caller.org_id, "slug": caller.org_slug}, "role": caller.role,
                        "team_id": caller.team_id, "csrf_token": csrf_token(token or "")})
    response.headers["Cache-Control"] = "no-store"
    return response
