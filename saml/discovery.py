"""Home-realm discovery for the sign-in page: which org's SSO serves what a person typed.

What a person types is their org's slug or their work email. A slug names an org with SSO (its
SP metadata is public already); an email is sent to SSO only by its domain, when the one org
with live members at that domain has SSO, so that the answer tells about a domain, never whether
an address exists. Any org at all, not only one with SSO: nothing proves which org holds a
domain, and another tenant could otherwise plant one member with an address at a victim's domain
(by JIT, or an edited email attribute) and have the victim's people sent to its own IdP. Such a
plant now only takes the domain out of discovery (its people get the mailed links, or type their
org's slug); owners' verified domains would let discovery trust a domain again. Everything else
is answered with a mailed one-time link (saml.links), the same answer for a known and an unknown
address.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.lookups import has_address
from identity.models import Org, User, UserEmail
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
    at_domain = session.scalars(  # each address a member shows, as its key (identity.names.name_key)
        select(User.org_id).distinct().join(UserEmail, UserEmail.user_id == User.id)
        .where(User.deleted_at.is_(None), User.active.is_(True), UserEmail.value.like(f"%@{name_key(domain)}"))
        .limit(2)).all()
    if len(at_domain) != 1:
        return None
    return session.scalar(select(Org.slug).join(SamlConnection, SamlConnection.org_id == Org.id)
                          .where(Org.id == at_domain[0]))


def orgs_of_address(session: Session, email: str) -> list[str]:
    """Return the slugs of the orgs where `email` is a live member (at most 5): where to mail links."""
    email = email.strip()
    return list(session.scalars(
        select(Org.slug).distinct().join(User, User.org_id == Org.id)
        .where(User.deleted_at.is_(None), User.active.is_(True), has_address(email))
        .order_by(Org.slug).limit(5)))
