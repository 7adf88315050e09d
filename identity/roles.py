"""Roles, their order, and the permission table of DESIGN.md section 3.2. One place for both."""

from __future__ import annotations

from collections.abc import Iterable

from audit import Actor
from identity.errors import InvalidValue, PermissionDenied
from identity.vocabulary import GrantSource, Role

ROLES = tuple(Role)  # lowest first
ALIASES = {"developer": Role.MEMBER}
RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}  # by the word: an Actor's role is a str
SOURCES = tuple(GrantSource)

# action -> roles allowed. The table of DESIGN.md 3.2, row by row.
PERMISSIONS: dict[str, frozenset[str]] = {
    "billing.manage": frozenset({Role.OWNER}),
    "org.delete": frozenset({Role.OWNER}),
    "org.transfer_ownership": frozenset({Role.OWNER}),
    "owners.manage": frozenset({Role.OWNER}),
    "members.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "teams.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "settings.manage": frozenset({Role.OWNER, Role.ADMIN}),
    # IdP trust (DESIGN 3.2): whoever controls the IdP controls every identity. SSO settings,
    # SCIM tokens and OAuth clients, mappings that grant owner, audit retention.
    "trust.manage": frozenset({Role.OWNER}),
    "trust.read": frozenset({Role.OWNER, Role.ADMIN}),
    "trust.revoke": frozenset({Role.OWNER, Role.ADMIN}),
    "billing.read": frozenset({Role.OWNER, Role.ADMIN}),
    # Wallets (DESIGN 3.8): limits, discounts, refunds and adjustments are the owner's; a top-up
    # is the owner's, or an admin's where the org's wallet setting `admins_may_top_up` allows it
    # (identity.wallets' `_authorize_top_up` asks this table first, then the setting).
    "wallets.manage": frozenset({Role.OWNER}),
    "wallets.top_up": frozenset({Role.OWNER, Role.ADMIN}),
    "usage.read": frozenset(ROLES),
    "own_keys.manage": frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
    "any_keys.revoke": frozenset({Role.OWNER, Role.ADMIN}),
    "own_keys.read": frozenset(ROLES),
    "keys.read": frozenset({Role.OWNER, Role.ADMIN}),
    "service_keys.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "audit.read": frozenset({Role.OWNER, Role.ADMIN}),
    "directory.read": frozenset(ROLES),
}
# Credentials that are not a person act within what provisioning needs.
SERVICE_ACTOR_ACTIONS = {
    "system": frozenset(PERMISSIONS),
    "scim_token": frozenset({"members.manage", "owners.manage", "teams.manage", "directory.read"}),
    "scim_client": frozenset({"members.manage", "owners.manage", "teams.manage", "directory.read"}),
}


def parse_role(value: str, *, allowed: Iterable[str] = ROLES) -> Role:
    """Return the canonical role for `value` (`developer` is `member`), or raise InvalidValue."""
    word = str(value).strip().lower()
    role = ALIASES.get(word, word)
    allowed = tuple(allowed)
    if role not in allowed:
        raise InvalidValue(f"invalid role {value!r}; expected one of {', '.join(allowed)}", field="role")
    return Role(role)


def highest(roles: Iterable[Role]) -> Role | None:
    """Return the highest of `roles`, or None when there are none."""
    return max(roles, key=RANK.__getitem__, default=None)


def lowest(roles: Iterable[Role | None]) -> Role | None:
    """Return the lowest of `roles` (None among them: no bound), or None when none is given."""
    return min((role for role in roles if role is not None), key=RANK.__getitem__, default=None)


def capped(role: Role, cap: str | None) -> Role:
    """Return the role a key acts with: its holder's `role`, at most the key's `cap` (None: uncapped).

    A key made for someone else carries the role its maker outranked (identity.keys), so that
    promoting its holder does not lift a key whose secret its maker still holds (DESIGN 3.2).
    """
    return role if cap is None or RANK[role] <= RANK[cap] else Role(cap)


# Actions on a member, each with the permission it needs on anyone (DESIGN 3.2, "Who may act on
# whom"). Acting on an owner needs `owners.manage` besides; acting for a member (a key or a
# sign-in link in their name) needs to outrank them.
ON_MEMBER: dict[str, str] = {
    "member.deactivate": "members.manage",
    "member.reactivate": "members.manage",
    "member.delete": "members.manage",
    "member.change_role": "members.manage",
    "member.update_profile": "members.manage",
    "member.remove_from_team": "members.manage",
    "member.add_to_team": "teams.manage",
    "member.change_team_role": "teams.manage",
    "member.revoke_keys": "any_keys.revoke",
    "member.create_key": "members.manage",
    "member.sign_in_link": "members.manage",
    # Which IdP identity signs in as the member (saml.identities): IdP trust, the owner's.
    "member.unlink_sso": "trust.manage",
}
FOR_MEMBER = frozenset({"member.create_key", "member.sign_in_link"})
# Every key scope, and the roles whose keys (and sessions) may carry it: the one definition of the
# scope set (identity.keys.SCOPES, the admin API's document and the console's key form read it).
# A key's scopes are capped by its holder's role: `admin` (the admin API) only for roles that hold
# some `*.manage` permission, so never for a viewer; what the key may do there is still its role's.
# `usage.read` and `directory.read` open only the admin API's reads of usage and of members and
# teams (DESIGN 3.2: "read members, teams, usage", every role); the domain's check still decides.
MANAGING_ROLES = frozenset().union(*(roles for name, roles in PERMISSIONS.items() if name.endswith(".manage")))
SCOPE_ROLES = {"admin": MANAGING_ROLES, "inference": frozenset(ROLES), "usage.read": PERMISSIONS["usage.read"],
               "directory.read": PERMISSIONS["directory.read"]}


def outranks(actor_role: str | None, target_role: str | None) -> bool:
    """Tell whether a person of `actor_role` may act for one of `target_role`: owners for anyone,
    everyone else only for those strictly below them."""
    if actor_role is None:
        return False
    if actor_role == Role.OWNER:
        return True
    return RANK[actor_role] > RANK.get(target_role or Role.VIEWER, 0)


def holds(actor: Actor, permission: str) -> bool:
    """Tell whether `actor` holds `permission` by its type or role (its org is not checked here)."""
    if actor.type in SERVICE_ACTOR_ACTIONS:
        return permission in SERVICE_ACTOR_ACTIONS[actor.type]
    return actor.role in PERMISSIONS[permission]


def refusal(actor: Actor, action: str, *, org_id: str, target_role: str | None = None,
            team_id: str | None = None) -> str | None:
    """Return why `actor` may not do `action` in org `org_id` (to a member of `target_role`, or to
    team `team_id`'s things), or None.

    The one function that decides "may this actor do this to that target" (DESIGN 3.2): every
    service asks it, through `authorize`, and the permission-matrix tests read it the same way.
    A credential bound to one team (a team service key, `Actor.team_id`) acts on that team's things
    only: a reporting job's key of one team reads no other team's wallet, nor a member's spend
    across teams.
    """
    if action not in PERMISSIONS and action not in ON_MEMBER:
        raise KeyError(action)
    if actor.type != "system" and actor.org_id != org_id:
        return "credentials of another org"
    if actor.team_id is not None and team_id != actor.team_id:
        return "a team service key acts only on its own team"
    if not holds(actor, ON_MEMBER.get(action, action)):
        return f"needs {ON_MEMBER.get(action, action)}"
    if action in ON_MEMBER and target_role == Role.OWNER and not holds(actor, "owners.manage"):
        return "only an owner may act on an owner"
    if action in FOR_MEMBER and actor.type in ("user", "api_key") and not outranks(actor.role, target_role):
        return f"a {actor.role} may act only for members below their own role"
    return None


def authorize(actor: Actor, action: str, *, org_id: str, target_role: str | None = None,
              team_id: str | None = None) -> None:
    """Raise PermissionDenied unless `actor` may do `action` in org `org_id` (to a `target_role` member,
    or to team `team_id`'s things)."""
    reason = refusal(actor, action, org_id=org_id, target_role=target_role, team_id=team_id)
    if reason is not None:
        raise PermissionDenied(f"{actor.type} {actor.display!r} may not {action}: {reason}", action=action)


def allowed_scopes(role: str | None) -> frozenset[str]:
    """Return the key scopes a holder of `role` may have."""
    return frozenset(scope for scope, roles in SCOPE_ROLES.items() if role in roles)
