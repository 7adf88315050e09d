"""Signing out: ending sign-in sessions, here or at the IdP's word, each end recorded.

The caller passes `actor`, carrying the request's context (id, address, user agent); each event's
actor is the user whose session ended, seen through that request.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from audit import Actor, record
from identity import sessions
from identity.actions import Action
from identity.lookups import user_target
from identity.models import SsoSession


def sign_out(session: Session, actor: Actor, token: str | None) -> SsoSession | None:
    """End the session of `token` (signed out here, `initiated_by` sp); return it, or None when there was none."""
    ended = sessions.end_session(session, token)
    if ended is None:
        return None
    _record_logout(session, actor, ended, "sp")
    return ended.row


def end_idp_sessions(session: Session, actor: Actor, org_id: str, name_id: str, session_indexes: list[str],
                     token: str | None) -> bool:
    """End the sessions an IdP's verified LogoutRequest names; tell whether `token`'s was one of them."""
    ended = sessions.end_idp_sessions(session, org_id, name_id, session_indexes)
    for each in ended:
        _record_logout(session, actor, each, "idp")
    return any(sessions.is_session_of(each.row, token) for each in ended)


def _record_logout(session: Session, request: Actor, ended: sessions.Ended, initiated_by: str) -> None:
    """Record the end as the member's own act, named by their userName as it is now (docs/audit.md 1)."""
    target = user_target(ended.user)
    user = replace(request, type="user", id=target.id, display=target.display, org_id=ended.row.org_id, role=None)
    record(session, user, Action.SSO_LOGGED_OUT, target, {"initiated_by": initiated_by}, org_id=ended.row.org_id)
