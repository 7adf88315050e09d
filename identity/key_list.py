"""The org's API keys as the admin API and the console list them (DESIGN.md section 3.7): keyset pages
by id, never a secret; who may see which is identity.keys' rule (`own_keys.read`, `keys.read`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from audit import Actor
from identity.errors import InvalidValue
from identity.grants import org_roles
from identity.key_revocation import grace_ended
from identity.keys import actor_user_id
from identity.models import ApiKey, Team, User
from identity.paging import by_id, split_by_id
from identity.roles import authorize, refusal
from identity.spend import KeySpend, key_states
from identity.vocabulary import KeyStatus, Role


@dataclass(frozen=True)
class KeyEntry:
    """One key as the list shows it: never its secret."""

    key: ApiKey
    team_name: str | None
    holder: str | None  # the holder's userName; None for a team service key
    spend: KeySpend | None = None  # this period's spend and refusal (None: the reader may not read usage)

    @property
    def state(self) -> str:
        """`active`, `rotating` (old secret in its grace period), `expired`, `blocked` or `revoked`."""
        if self.key.status != KeyStatus.ACTIVE:
            return str(self.key.status)
        if self.key.expires_at is None:
            return "active"
        return "expired" if grace_ended(self.key.expires_at) else "rotating"

    @property
    def refused(self) -> KeySpend | None:
        """The spend refusal in force on a usable key (the key check refuses it), else None."""
        usable = self.state in ("active", "rotating")
        return self.spend if usable and self.spend is not None and self.spend.refusal is not None else None


@dataclass(frozen=True)
class KeyPage:
    """A page of keys by id; `next` and `previous` are the cursors (`after`, `before`) of its neighbours."""

    entries: list[KeyEntry]
    next: str | None
    previous: str | None = None


def list_api_keys(session: Session, actor: Actor, org_id: str, *, limit: int, after: str = "", before: str = "",
                  kind: str | None = None, whose: str | None = None) -> KeyPage:
    """Return a keyset page of the org's keys by id (after `after`, or the one before `before`): all of
    them for owners and admins, a member's own otherwise (team service keys only to those who may see
    every key), each with its spend this period and the spend refusal in force (identity.spend.key_states).
    `kind`: `personal` or `service`; `whose`: `mine` (the actor's own) or `others`."""
    authorize(actor, "own_keys.read", org_id=org_id)
    conditions: list[ColumnElement[bool]] = [ApiKey.org_id == org_id]
    me = actor_user_id(session, actor) or ""
    if refusal(actor, "keys.read", org_id=org_id) is not None or whose == "mine":
        conditions.append(ApiKey.user_id == me)
    if whose == "others":
        conditions.append(or_(ApiKey.user_id.is_(None), ApiKey.user_id != me))
    elif whose not in (None, "mine"):
        raise InvalidValue("whose must be mine or others", field="whose")
    if kind == "service":
        conditions.append(ApiKey.user_id.is_(None))
    elif kind == "personal":
        conditions.append(ApiKey.user_id.is_not(None))
    elif kind is not None:
        raise InvalidValue("kind must be personal or service", field="kind")
    rows = session.execute(by_id(select(ApiKey, Team.name, User.user_name).outerjoin(Team, Team.id == ApiKey.team_id)
                                 .outerjoin(User, User.id == ApiKey.user_id).where(*conditions), ApiKey.id,
                                 limit=limit, after=after, before=before))
    found = [KeyEntry(key, team_name, holder) for key, team_name, holder in rows]
    page, following, previous = split_by_id(found, lambda entry: entry.key.id, limit=limit, after=after,
                                            before=before)
    if refusal(actor, "usage.read", org_id=org_id) is None:
        states = key_states(session, actor, org_id, [entry.key for entry in page])
        page = [replace(entry, spend=states.get(entry.key.id)) for entry in page]
    return KeyPage(page, following, previous)


def holder_roles(session: Session, entries: list[KeyEntry]) -> dict[str, Role]:
    """Return the org role of each holder of `entries`' keys that has one, in one query (for may_act_on_key)."""
    return org_roles(session, sorted({entry.key.user_id for entry in entries if entry.key.user_id}))
