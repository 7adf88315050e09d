"""Invitations (DESIGN.md section 3.6): one-time links, hashed, valid for 7 days, audited."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import tokens, users
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, Unauthenticated
from identity.lookups import default_team, find_by_user_name, get_team
from identity.models import ApiKey, Invitation, User
from identity.roles import authorize, parse_role
from identity.vocabulary import GrantSource, InvitationStatus, Role

LIFETIME = dt.timedelta(days=7)


def _target(invitation: Invitation) -> Target:
    return Target("invitation", invitation.id, invitation.email)


def invite(session: Session, actor: Actor, org_id: str, *, email: str, role: str = Role.MEMBER,
           team_id: str | None = None) -> tuple[Invitation, str]:
    """Invite `email` with a role into a team; return the invitation and its link token (shown once).

    The team defaults to the inviter's key's team, else `Default`.
    """
    role = parse_role(role)
    authorize(actor, "owners.manage" if role == Role.OWNER else "members.manage", org_id=org_id)
    email = users.checked_email((email or "").strip()) or ""
    if "@" not in email:
        raise InvalidValue(f"invalid email {email!r}", field="email")
    if find_by_user_name(session, org_id, email) is not None:
        raise Conflict(f"{email} is already a member", field="email")
    team_id = team_id or _inviter_team(session, actor) or default_team(session, org_id).id
    get_team(session, org_id, team_id)
    new = tokens.generate("inv")
    now = clock.now()
    invitation = Invitation(id=str(uuid.uuid4()), org_id=org_id, email=email, role=role, team_id=team_id,
                            prefix=new.prefix, secret_hash=new.hash, status=InvitationStatus.PENDING,
                            invited_by=actor.id, created_at=now, expires_at=now + LIFETIME)
    session.add(invitation)
    record(session, actor, Action.INVITATION_CREATED, _target(invitation),
           {"email": email, "role": role, "team_id": team_id, "expires_at": invitation.expires_at.isoformat()},
           org_id=org_id)
    return invitation, new.plaintext


def _inviter_team(session: Session, actor: Actor) -> str | None:
    if actor.type != "api_key":
        return None
    key = session.get(ApiKey, actor.id)
    return key.team_id if key else None


def _by_token(session: Session, token: str) -> Invitation:
    prefix = tokens.split_prefix(token or "")
    invitation = session.scalars(select(Invitation).where(Invitation.prefix == prefix)).one_or_none() \
        if prefix else None
    if invitation is None or not tokens.matches(token, invitation.secret_hash):
        raise Unauthenticated("invalid invitation link")
    return invitation


def _pending(session: Session, token: str) -> Invitation:
    """Return the pending, unexpired invitation behind a link token."""
    invitation = _by_token(session, token)
    status = InvitationStatus.EXPIRED \
        if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= clock.now() else invitation.status
    if status != InvitationStatus.PENDING:
        raise InvalidValue(f"this invitation is {status}", field="token", invitation_status=status)
    return invitation


def expire_if_due(session: Session, token: str) -> bool:
    """Mark the invitation behind `token` expired (audited) when its time is up; tell whether it did.

    Callers run this in its own transaction before accepting or declining, so that the expiry
    is recorded even though the acceptance that follows is refused.
    """
    invitation = _by_token(session, token)
    if invitation.status != InvitationStatus.PENDING or invitation.expires_at > clock.now():
        return False
    expire(session, invitation)
    return True


def expire(session: Session, invitation: Invitation, actor: Actor | None = None, reason: str = "time") -> None:
    """Mark a pending invitation expired (audited): its time is up, or (`reason`) its team was deleted."""
    invitation.status = InvitationStatus.EXPIRED
    record(session, actor or _invitee(invitation), Action.INVITATION_EXPIRED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.EXPIRED}, "reason": reason},
           org_id=invitation.org_id)


def _invitee(invitation: Invitation) -> Actor:
    return Actor("system", f"invitation:{invitation.id}", f"invitee {invitation.email}")


def invitee(session: Session, token: str) -> Actor:
    """Return the audit actor of whoever holds the link `token`."""
    return _invitee(_by_token(session, token))


def accept(session: Session, actor: Actor, token: str) -> User:
    """Accept an invitation: the invitee becomes a member with its role and team, taking a seat."""
    invitation = _pending(session, token)
    user = users.provision_user(session, actor, invitation.org_id, user_name=invitation.email,
                                email=invitation.email, role=invitation.role, team_id=invitation.team_id,
                                source=GrantSource.INVITATION)
    invitation.status = InvitationStatus.ACCEPTED
    record(session, actor, Action.INVITATION_ACCEPTED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.ACCEPTED}, "user_id": user.id},
           org_id=invitation.org_id)
    return user


def decline(session: Session, actor: Actor, token: str) -> None:
    """Decline an invitation; its link stops working."""
    invitation = _pending(session, token)
    invitation.status = InvitationStatus.DECLINED
    record(session, actor, Action.INVITATION_DECLINED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.DECLINED}},
           org_id=invitation.org_id)


def expire_due(session: Session, org_id: str) -> int:
    """Mark every pending invitation of the org whose time is up as expired; return how many."""
    due = list(session.scalars(select(Invitation).where(
        Invitation.org_id == org_id, Invitation.status == InvitationStatus.PENDING,
        Invitation.expires_at <= clock.now())))
    for invitation in due:
        expire(session, invitation)
    return len(due)


def get_invitation(session: Session, org_id: str, invitation_id: str) -> Invitation:
    """Return an invitation of the org, or raise NotFound."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.org_id != org_id:
        raise NotFound(f"no invitation {invitation_id!r} in this org")
    return invitation
