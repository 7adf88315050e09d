"""Roles, their order, and the permission table of DESIGN.md section 3.2. One place for both."""

from __future__ import annotations

from collections.abc import Iterable

from audit import Actor
from identity.errors import InvalidValue, PermissionDenied

ROLES = ("viewer", "member", "admin", "owner")  # lowest first
ALIASES = {"developer": "member"}
RANK = {role: rank for rank, role in enumerate(ROLES)}
SOURCES = ("manual", "scim", "saml", "invitation")

# action -> roles allowed. The table of DESIGN.md 3.2, row by row.
PERMISSIONS: dict[str, frozenset[str]] = {
    "billing.manage": frozenset({"owner"}),
    "owners.manage": frozenset({"owner"}),
    "members.manage": frozenset({"owner", "admin"}),
    "teams.manage": frozenset({"owner", "admin"}),
    "settings.manage": frozenset({"owner", "admin"}),
    # IdP trust (DESIGN 3.2): whoever controls the IdP controls every identity. SSO settings,
    # SCIM tokens and OAuth clients, mappings that grant owner, audit retention.
    "trust.manage": frozenset({"owner"}),
    "trust.read": frozenset({"owner", "admin"}),
    "trust.revoke": frozenset({"owner", "admin"}),
    "billing.read": frozenset({"owner", "admin"}),
    "usage.read": frozenset(ROLES),
    "own_keys.manage": frozenset({"owner", "admin", "member"}),
    "any_keys.revoke": frozenset({"owner", "admin"}),
    "audit.read": frozenset({"owner", "admin"}),
    "directory.read": frozenset(ROLES),
}
# Credentials that are not a person act within what provisioning needs.
SERVICE_ACTOR_ACTIONS = {
    "system": frozenset(PERMISSIONS),
    "scim_token": frozenset({"members.manage", "owners.manage", "teams.manage", "directory.read"}),
    "scim_client": frozenset({"members.manage", "owners.manage", "teams.manage", "directory.read"}),
}


def parse_role(value: str, *, allowed: Iterable[str] = ROLES) -> str:
    """Return the canonical role for `value` (`developer` is `member`), or raise InvalidValue."""
    role = ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    allowed = tuple(allowed)
    if role not in allowed:
        raise InvalidValue(f"invalid role {value!r}; expected one of {', '.join(allowed)}", field="role")
    return role


def highest(roles: Iterable[str]) -> str | None:
    """Return the highest of `roles`, or None when there are none."""
    return max(roles, key=RANK.__getitem__, default=None)


def authorize(actor: Actor, action: str, *, org_id: str) -> None:
    """Raise PermissionDenied unless `actor` may do `action` in org `org_id`."""
    if action not in PERMISSIONS:
        raise KeyError(action)
    if actor.type in SERVICE_ACTOR_ACTIONS:
        allowed = action in SERVICE_ACTOR_ACTIONS[actor.type]
    else:
        allowed = actor.role in PERMISSIONS[action]
    if actor.type != "system" and actor.org_id != org_id:
        allowed = False
    if not allowed:
        raise PermissionDenied(f"{actor.type} {actor.display!r} may not {action}", action=action)
