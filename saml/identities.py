"""A member's links to persistent IdP identities (saml.models.SamlIdentity): listed, and unlinked.

A linked NameID chooses its member for good, and a member takes no other NameID from that IdP
(saml.service.find_by_identity). So when the IdP's identity of a person changes (the IdP admin
re-created the person, or moved the NameID from the UPN to the object id, or the org moved to
another IdP tenant with the same entity id), every sign-in of that member is refused
`name_id_mismatch` until the old link goes. Unlinking is IdP trust (DESIGN.md 3.2: it decides
which IdP identity becomes the account), so it is the owner's, on anyone (`member.unlink_sso`).
The member's sessions end with it (they came in through the link), and their next sign-in links
anew, by the claims' userName, as a first sign-in does; one audit event per link removed.

When the org's IdP entity id changes (its metadata uploaded again or refreshed), the links move to
the new one with it (`move_links`): a sign-in looks links up under the connection's entity id only,
and left behind they would make every member look unlinked, so that the email attribute, which an
IdP user may edit, would choose an account again (DESIGN.md 5: it links at most once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from audit import Actor, record
from audit.log import Target
from identity import sessions
from identity.actions import Action
from identity.errors import NotFound
from identity.grants import org_role
from identity.lookups import get_user, user_target
from identity.models import Org
from identity.roles import authorize
from saml.models import SamlIdentity


@dataclass(frozen=True)
class Link:
    """One link as an admin reads it."""

    idp_entity_id: str
    name_id: str
    linked_at: dt.datetime

    def as_dict(self) -> dict[str, str]:
        return {"idp_entity_id": self.idp_entity_id, "name_id": self.name_id, "linked_at": self.linked_at.isoformat()}


def _links(session: Session, org_id: str, user_id: str) -> list[SamlIdentity]:
    return list(session.scalars(select(SamlIdentity).where(
        SamlIdentity.org_id == org_id, SamlIdentity.user_id == user_id).order_by(SamlIdentity.created_at)))


def _link(row: SamlIdentity) -> Link:
    return Link(row.idp_entity_id, row.name_id, row.created_at)


def linked_identities(session: Session, actor: Actor, org_id: str, user_id: str) -> list[Link]:
    """Return the IdP identities a member of the org is linked to (oldest first)."""
    authorize(actor, "trust.read", org_id=org_id)
    user = get_user(session, org_id, user_id)
    return [_link(row) for row in _links(session, org_id, user.id)]


def unlink_identities(session: Session, actor: Actor, org_id: str, user_id: str) -> list[Link]:
    """Unlink a member from every IdP identity it is linked to, end their sessions; return what was
    unlinked. NotFound when the member has no link (nothing is written)."""
    authorize(actor, "member.unlink_sso", org_id=org_id)
    user = get_user(session, org_id, user_id)
    authorize(actor, "member.unlink_sso", org_id=org_id, target_role=org_role(session, user.id))
    # What the DELETE removed, not what a read before it saw: of two unlinks at once, the second
    # waits for the first's row locks, removes nothing, and is NotFound (no second event).
    gone = session.execute(delete(SamlIdentity).where(SamlIdentity.org_id == org_id, SamlIdentity.user_id == user.id)
                           .returning(SamlIdentity.idp_entity_id, SamlIdentity.name_id, SamlIdentity.created_at))
    links = sorted((Link(*row) for row in gone), key=lambda link: (link.linked_at, link.idp_entity_id))
    if not links:
        raise NotFound(f"member {user.user_name!r} is linked to no IdP identity", user_id=user.id)
    sessions.end_user_sessions(session, user.id)
    for link in links:
        record(session, actor, Action.SSO_IDENTITY_UNLINKED, user_target(user),
               {"idp_entity_id": link.idp_entity_id, "name_id": link.name_id}, org_id=org_id)
    return links


def _count(result: object) -> int:
    """The rows a DELETE or UPDATE changed."""
    return int(getattr(result, "rowcount", 0) or 0)


def move_links(session: Session, actor: Actor, org: Org, old_entity_id: str, new_entity_id: str) -> None:
    """Move the org's links at `old_entity_id` to `new_entity_id`, audited; called by
    saml.configuration.configure_connection in its transaction, under the org's lock.

    A link already at the new entity id for the same member or the same NameID (made before links
    moved with the entity id) stands, and the old one it clashes with is dropped, so that the
    unique keys hold; the event counts both.
    """
    if old_entity_id == new_entity_id:
        return
    there = aliased(SamlIdentity)
    clash = exists().where(there.org_id == org.id, there.idp_entity_id == new_entity_id,
                           or_(there.user_id == SamlIdentity.user_id, there.name_id_key == SamlIdentity.name_id_key))
    at_old = and_(SamlIdentity.org_id == org.id, SamlIdentity.idp_entity_id == old_entity_id)
    dropped = _count(session.execute(delete(SamlIdentity).where(at_old, clash)))
    moved = _count(session.execute(update(SamlIdentity).where(at_old).values(idp_entity_id=new_entity_id)))
    if moved or dropped:
        record(session, actor, Action.SSO_IDENTITIES_MOVED, Target("org", org.id, org.slug),
               {"from_idp_entity_id": old_entity_id, "to_idp_entity_id": new_entity_id, "moved": moved,
                "dropped": dropped}, org_id=org.id)
