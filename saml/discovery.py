"""Home-realm discovery for the sign-in page: which org's SSO serves what a person typed.

What a person types is their org's slug or their work email. A slug names an org with SSO (its
SP metadata is public already); an email is sent to SSO only by its domain, when exactly one org
with SSO has live members at that domain, so that the answer tells about a domain, never whether
an address exists. Everything else is answered with a mailed one-time link (saml.links), the
same answer for a known and an unknown address.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from identity.models import Org, User
from identity.names import name_key
from saml.models import SamlConnection


def sso_slug(session: Session, typed: str) -> str | None:
    """Return the slug of the org whose SSO serves `typed` (a slug or a work email), or None."""
    typed = typed.strip().lower()
    if "@" not in typed:
        return session.scalar(select(Org.slug).join(SamlConnection, SamlConnection.org_id == Org.id)
                              .where(Org.slug == typed))
    domain = typed.rpartition("@")[2]
    if not domain or any(c in domain for c in "%_\\"):  # LIKE wildcards and its escape
        return None
    found = session.scalars(
        select(Org.slug).distinct().join(SamlConnection, SamlConnection.org_id == Org.id)
        .join(User, User.org_id == Org.id)
        .where(User.deleted_at.is_(None), User.active.is_(True), func.lower(User.email).like(f"%@{domain}"))
        .limit(2)).all()
    return found[0] if len(found) == 1 else None


def orgs_of_address(session: Session, email: str) -> list[str]:
    """Return the slugs of the orgs where `email` is a live member (at most 5): where to mail links."""
    email = email.strip()
    return list(session.scalars(
        select(Org.slug).distinct().join(User, User.org_id == Org.id)
        .where(User.deleted_at.is_(None), User.active.is_(True),
               or_(func.lower(User.email) == email.lower(), User.user_name_key == name_key(email)))
        .order_by(Org.slug).limit(5)))
