"""What replaying an org's events builds (identity.replay): per-entity state, and the findings.

For every entity, the fields the events set, which event set each (for a finding's message), and
whether its creation is in the retained log; identity.reconcile compares this with the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Row

from identity.roles import RANK

# A role grant as the data keys it: (team id or None for org-wide, source, source_ref).
GrantKey = tuple[str | None, str, str]
# change_role records the member's resulting (highest) org role, not the manual grant it writes:
# when another grant is as high, the manual grant is known only to be at most that role.
AT_MOST = "<="


class _Unknown:
    """The type of UNKNOWN."""

    def __repr__(self) -> str:
        return "UNKNOWN"


# What a field is after an event changed it without recording to what (one an older release wrote:
# during a rolling upgrade, after a newer one's that did): not compared until an event sets it again.
UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Finding:
    """One piece of current state that the log does not explain."""

    # user | role_grant | group_member | team | group | group_mapping | api_key | scim_token | scim_client
    # | invitation | org | seat_charge | gateway_credential
    kind: str
    entity_id: str
    problem: str
    display: str = ""

    def __str__(self) -> str:
        named = f"{self.kind} {self.entity_id}" + (f" ({self.display})" if self.display else "")
        return f"{named}: {self.problem}"


@dataclass
class Entity:
    """What the events say about one entity: the fields they set, and the event that set each."""

    created: int | None = None  # seq of its creation event, when retained
    fields: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    last: str = ""  # the newest event about it

    def set(self, event: Row[Any], **values: Any) -> None:
        """Record that `event` set these fields."""
        self.last = f"{event.action} (#{event.seq})"
        for name, value in values.items():
            self.fields[name] = value
            self.why[name] = self.last


@dataclass
class Expected:
    """The state the replayed events lead to, per entity, and what the events alone contradict."""

    org_id: str
    org_defaults: dict[str, Any]  # the settings an org starts with that org.created does not record
    org: Entity = field(default_factory=Entity)
    users: dict[str, Entity] = field(default_factory=dict)
    # Grants of the members whose user.created is retained: user id -> key -> role.
    grants: dict[str, dict[GrantKey, str]] = field(default_factory=dict)
    user_sources: dict[str, str] = field(default_factory=dict)  # what provisioned them, from user.created
    teams: dict[str, Entity] = field(default_factory=dict)
    groups: dict[str, Entity] = field(default_factory=dict)
    group_members: dict[str, set[str]] = field(default_factory=dict)  # groups whose creation is retained
    mappings: dict[str, Entity] = field(default_factory=dict)
    api_keys: dict[str, Entity] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)  # prefix -> id, from api_key.created
    keys_by_prefix: dict[str, Entity] = field(default_factory=dict)  # keys made before the retained log
    scim_tokens: dict[str, Entity] = field(default_factory=dict)
    scim_clients: dict[str, Entity] = field(default_factory=dict)
    invitations: dict[str, Entity] = field(default_factory=dict)
    charges: dict[str, Entity] = field(default_factory=dict)
    gateway_credentials: dict[str, Entity] = field(default_factory=dict)  # the operators' chain only
    findings: list[Finding] = field(default_factory=list)


Handler = Callable[[Expected, Row[Any]], None]


def rank(role: str) -> int:
    """Return a role's rank, lowest first; an 'at most' bound ranks as its role."""
    return RANK[role.removeprefix(AT_MOST)]


# What every handler uses (identity.replay, identity.replay_groups).

def changed_to(change: Any) -> Any:
    return change["after"] if isinstance(change, dict) else change


def entity_of(entities: dict[str, Entity], event: Row[Any], created: bool = False) -> Entity:
    entity = entities.setdefault(event.target_id, Entity())
    if created:
        entity.created = event.seq
    return entity


def drop_grants(x: Expected, user_id: str, keep: Callable[[GrantKey], bool]) -> None:
    grants = x.grants.get(user_id)
    if grants is not None:
        x.grants[user_id] = {key: role for key, role in grants.items() if keep(key)}


def key_of(x: Expected, e: Row[Any]) -> Entity:
    """The key an event names by id (and by prefix, its display): one entity whichever way later
    events name it, for a key made before the retained log too."""
    x.key_ids.setdefault(e.target_display, e.target_id)
    if e.target_id not in x.api_keys and e.target_display in x.keys_by_prefix:
        x.api_keys[e.target_id] = x.keys_by_prefix.pop(e.target_display)
    return entity_of(x.api_keys, e)


def set_key_status(x: Expected, e: Row[Any], prefixes: Iterable[str], status: str, reason: str | None) -> None:
    """Keys named by prefix in a member's or team's event; a key made before the retained log by prefix alone."""
    for prefix in prefixes:
        key_id = x.key_ids.get(prefix)
        entity = x.api_keys[key_id] if key_id else x.keys_by_prefix.setdefault(prefix, Entity())
        entity.set(e, status=status, status_reason=reason)
