"""Who is signed in: the profile behind a live browser session (the service's /me)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from identity import sessions, users
from identity.models import Org


@dataclass(frozen=True)
class Profile:
    """The signed-in user, its org, its org role and team roles, and how it signed in."""

    user_id: str
    user_name: str
    email: str | None
    org_id: str
    org_slug: str
    org_name: str
    role: str | None
    teams: Mapping[str, str]
    method: str


def profile(session: Session, token: str | None, lifetime: sessions.Lifetime) -> Profile | None:
    """Return the profile of the live session of `token` (touching it), or None when nobody is signed in."""
    found = sessions.resolve_session(session, token, lifetime)
    if found is None:
        return None
    user, org = found.user, session.get_one(Org, found.user.org_id)
    return Profile(user.id, user.user_name, user.email, org.id, org.slug, org.name, users.org_role(session, user.id),
                   users.team_roles(session, user.id), found.session.method)
