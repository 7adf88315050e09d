"""Running a domain service as one unit of work, with refusals audited on their own.

A refused change (a seat cap reached, the last owner protected) changes nothing, yet the
refusal itself is an audit event: it is written in a second transaction after the first
rolled back, so that no part of the refused change can ride along with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import Actor, record
from audit.log import Target
from identity import outbox, sessions
from identity.actions import Action
from identity.db import Database
from identity.errors import Conflict, LastOwner, SeatCapReached
from identity.seats import AFTER_ORG_LOCK

P = ParamSpec("P")
R = TypeVar("R")

# Refusals that are audited: error class -> audit action.
AUDITED_REFUSALS: dict[type[Exception], str] = {
    SeatCapReached: Action.SEAT_REFUSED,
    LastOwner: Action.MEMBER_LAST_OWNER_PROTECTED,
    outbox.MailCapReached: Action.MAIL_CAPPED,
}


def run(db: Database, actor: Actor, service: Callable[Concatenate[Session, Actor, P], R],
        *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `service(session, actor, *args, **kwargs)` in a transaction; commit or roll back."""
    try:
        with db.transaction() as session:
            confirmed: list[sessions.Held] = []
            if actor.type in ("user", "api_key"):  # a session's or a key's write: confirmed under the org's lock
                session.info[AFTER_ORG_LOCK] = lambda locked: confirmed.append(sessions.confirm_role(locked, actor))
            done = service(session, actor, *args, **kwargs)
            if actor.type in ("user", "api_key"):
                # And once it holds every lock it takes (its writes flushed): a demotion it waited for
                # after the org's lock, or without it (the IdP taking away a group, and the role it
                # gave; a key revoked), has committed and is read. What the write took away from its
                # caller itself (a transfer of ownership, a rule edit; a key revoking itself) is told
                # from the grants read under the org's lock (sessions.confirm_role).
                session.flush()
                sessions.confirm_role(session, actor, confirmed[0] if confirmed else None)
            return done
    except IntegrityError as error:
        # Services check uniqueness under the org lock; this is the net under that rule.
        if "unique" in str(error.orig).lower():
            raise Conflict("that name is already taken in this org (a parallel request made it first)") from error
        raise
    except (SeatCapReached, LastOwner, outbox.MailCapReached) as refusal:
        org_id = refusal.context.get("org_id") or actor.org_id
        if org_id:
            with db.transaction() as session:
                # About the member by id when there is one (a reactivation, a last owner); a member
                # not yet made (provisioning) is named in the changes, its org the target: a userName
                # may be 320 characters, a target's id 64.
                user_id, user_name = refusal.context.get("user_id"), refusal.context.get("user_name")
                target = Target("user", str(user_id), str(user_name or user_id)) if user_id else \
                    Target("org", str(org_id), str(org_id))
                changes = {"reason": refusal.message, "service": service.__name__}
                record(session, actor, AUDITED_REFUSALS[type(refusal)], target,
                       {**changes, "user_name": user_name} if user_name else changes, org_id=org_id, outcome="refused")
        raise
