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
from identity.actions import Action
from identity.db import Database
from identity.errors import Conflict, LastOwner, SeatCapReached

P = ParamSpec("P")
R = TypeVar("R")

# Refusals that are audited: error class -> audit action.
AUDITED_REFUSALS: dict[type[Exception], str] = {
    SeatCapReached: Action.SEAT_REFUSED,
    LastOwner: Action.MEMBER_LAST_OWNER_PROTECTED,
}


def run(db: Database, actor: Actor, service: Callable[Concatenate[Session, Actor, P], R],
        *args: P.args, **kwargs: P.kwargs) -> R:
    """Call `service(session, actor, *args, **kwargs)` in a transaction; commit or roll back."""
    try:
        with db.transaction() as session:
            return service(session, actor, *args, **kwargs)
    except IntegrityError as error:
        # Services check uniqueness under the org lock; this is the net under that rule.
        if "unique" in str(error.orig).lower():
            raise Conflict("that name is already taken in this org (a parallel request made it first)") from error
        raise
    except (SeatCapReached, LastOwner) as refusal:
        org_id = refusal.context.get("org_id") or actor.org_id
        if org_id:
            with db.transaction() as session:
                subject = refusal.context.get("user_id") or refusal.context.get("user_name") or org_id
                record(session, actor, AUDITED_REFUSALS[type(refusal)], Target("user", str(subject), str(subject)),
                       {"reason": refusal.message, "service": service.__name__}, org_id=org_id, outcome="refused")
        raise
