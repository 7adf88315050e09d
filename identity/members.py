"""Use cases on one member that the admin API offers as one request: add, change, invite, join.

Each is one unit of work built from the services that hold the rules (users, invitations), and
returns the member as the directory shows it, read in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from audit import Actor
from identity import invitations, seats, users
from identity.directory import InvitationEntry, Member
from identity.models import Invitation, Org
from identity.seats import SeatPreview
from identity.vocabulary import GrantSource


@dataclass(frozen=True)
class Invited:
    """A new invitation, its link's token (shown once) and the seats as they stand."""

    invitation: InvitationEntry
    token: str
    seats: SeatPreview
    link: str


def add_member(session: Session, actor: Actor, org_id: str, *, email: str, role: str | None,
               team_id: str | None) -> Member:
    """Add a member by hand (source `manual`), taking a seat."""
    user = users.provision_user(session, actor, org_id, user_name=email, email=email, role=role, team_id=team_id,
                                source=GrantSource.MANUAL)
    return Member.of(session, user)


def change_member(session: Session, actor: Actor, org_id: str, user_id: str, *, role: str | None,
                  active: bool | None) -> Member:
    """Apply a role and an active state in one transaction, so that a refused half undoes the other."""
    if role is not None:
        users.change_role(session, actor, org_id, user_id, role)
    if active is not None:
        (users.reactivate_user if active else users.deactivate_user)(session, actor, org_id, user_id)
    return Member.of(session, users.get_user(session, org_id, user_id))


def invite_member(session: Session, actor: Actor, org_id: str, *, email: str, role: str,
                  team_id: str | None, base_url: str | None = None) -> Invited:
    """Invite `email`; return the invitation, its token and link, and the seat position (the cost of accepting)."""
    invitation, token = invitations.invite(session, actor, org_id, email=email, role=role, team_id=team_id,
                                           base_url=base_url)
    return _invited(session, invitation, token, base_url)


def resend_invitation(session: Session, actor: Actor, org_id: str, invitation_id: str, *,
                      base_url: str | None = None) -> Invited:
    """Resend an invitation with a new link (the old one ends); return it as `invite_member` does."""
    invitation, token = invitations.resend(session, actor, org_id, invitation_id, base_url=base_url)
    return _invited(session, invitation, token, base_url)


def _invited(session: Session, invitation: Invitation, token: str, base_url: str | None) -> Invited:
    # The inviter may manage members, and so may see what one more would cost (no billing.read asked).
    org_id = invitation.org_id
    pending = invitations.pending_count(session, org_id)
    preview = seats.preview(session.get_one(Org, org_id), pending_invitations=pending)
    return Invited(InvitationEntry.of(invitation), token, preview, invitations.accept_link(base_url, token))


def invitation_holder(session: Session, token: str, in_request: Callable[[Actor], Actor] | None = None) -> Actor:
    """Return the actor of whoever holds the link `token`, recording its expiry first, as theirs, when it is due.

    `in_request` gives that actor the request's context (id, address, user agent), as the adapter
    gives every actor it builds. Call it in a transaction of its own, before accepting or declining:
    the expiry must be kept even though the acceptance that follows is then refused.
    """
    return invitations.link_holder(session, token, in_request)


def accept_invitation(session: Session, actor: Actor, token: str) -> Member:
    """Accept the invitation of `token`: its invitee becomes a member with its role and team."""
    return Member.of(session, invitations.accept(session, actor, token))
