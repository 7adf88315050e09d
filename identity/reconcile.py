"""Reconciling an org's audit log with its data (DESIGN.md section 6): finding changes that bypassed the log.

The events are replayed into the state they lead to (identity.replay), then each domain table of the
org is streamed and compared with it: every user, role grant, IdP group membership, team, group,
group mapping rule, API key, SCIM token and client (their secrets' hashes too, by the fingerprint
their creation records, a rotated key's end, a revoked token's or client's time), invitation,
seat charge, and the org's seat counters and settings must be what the events made them. A row no
event created, a field the events left otherwise, or something the events made that is gone, is a
finding. It lives with the domain, not in `audit`, because it needs both: the audit package imports
nothing of the domain. It only reads. The operators' own chain explains the gateway credentials
(`reconcile_operator`).

Retention: events older than the chain's base are gone, so an entity created before the oldest
retained event is not reported for lacking its creation event; what later events say of it is
still checked, except the role grants of a member created before that time.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Executable, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from audit.events import BATCH
from audit.log import OPERATOR_STREAM
from audit.models import AuditEvent, AuditHead
from identity.actions import Action
from identity.models import (
    ApiKey,
    GatewayCredential,
    GroupMapping,
    IdpGroup,
    IdpGroupMember,
    Invitation,
    Org,
    RoleGrant,
    ScimClient,
    ScimToken,
    SeatCharge,
    Team,
    User,
)
from identity.replay import AT_MOST, UNKNOWN, Entity, Expected, Finding, GrantKey, rank, replay
from identity.tokens import FINGERPRINT, fingerprint

__all__ = ["Finding", "reconcile", "reconcile_operator"]

# Org settings that org.created does not record: they start at the model's defaults, as create_org sets them.
DEFAULTED_SETTINGS = ("default_role", "group_sync", "idp_may_grant_owner", "require_sso", "audit_retention_days")
ORG_FIELDS = ("seats_used", "purchased_seats", "included_seats", "seat_price_cents", "max_seats", *DEFAULTED_SETTINGS)


def reconcile(session: Session, org_id: str) -> list[Finding]:
    """Return every piece of the org's current state that its retained events do not explain.

    Read it in one snapshot (on PostgreSQL, REPEATABLE READ), or a change committed between
    reading the events and reading the data shows as a finding.
    """
    head = session.get(AuditHead, org_id)
    base = head.base_seq if head is not None else 0
    since = _retained_since(session, org_id, base)
    expected = replay(session, org_id, base, _org_defaults())
    found = list(expected.findings)
    for check in (_org, _users, _grants, _teams, _groups, _group_members, _mappings, _api_keys, _scim_tokens,
                  _scim_clients, _invitations, _charges):
        found += check(session, expected, since)
    return found


def reconcile_operator(session: Session) -> list[Finding]:
    """Return every gateway credential the operators' own chain (audit.log.OPERATOR_STREAM) does not explain.

    Every one needs its event: `gateway_credential.created`, or the `gateway_credential.baseline`
    that recorded it when the chain began (identity.gateway.begin_chain); its `created_at`, which
    an INSERT sets at will, excuses none.
    """
    head = session.get(AuditHead, OPERATOR_STREAM)
    base = head.base_seq if head is not None else 0
    since = _retained_since(session, OPERATOR_STREAM, base)
    expected = replay(session, OPERATOR_STREAM, base, {})
    g = GatewayCredential
    return _compare(
        session, since, "gateway_credential", select(g.id, g.name, g.prefix, g.revoked_at, g.created_at, g.secret_hash),
        expected.gateway_credentials, lambda row: row.prefix,
        lambda row: {**_revocation(row), "name": row.name, "prefix": row.prefix,
                     FINGERPRINT: fingerprint(row.secret_hash)},
        Action.GATEWAY_CREDENTIAL_CREATED)


def _retained_since(session: Session, org_id: str, base_seq: int) -> dt.datetime | None:
    """The time of the oldest retained event, when a purge removed older ones; None when none was removed."""
    if not base_seq:
        return None
    e = AuditEvent
    return session.scalar(select(e.occurred_at).where(e.org_id == org_id, e.seq > base_seq).order_by(e.seq).limit(1))


def _org_defaults() -> dict[str, Any]:
    columns = Org.__table__.c
    return {name: getattr(columns[name].default, "arg", None) for name in DEFAULTED_SETTINGS}


def _stream(session: Session, stmt: Executable) -> Iterator[Row[Any]]:
    """Yield the rows a batch at a time (a server-side cursor on PostgreSQL): constant memory."""
    yield from session.execute(stmt, execution_options={"yield_per": BATCH})


def _check(kind: str, entity_id: str, display: str, state: Entity | None, actual: dict[str, Any],
           created_at: dt.datetime, since: dt.datetime | None, creation: str) -> list[Finding]:
    """Compare one row with what the events say of it."""
    found = []
    if (state is None or state.created is None) and (since is None or created_at >= since):
        found.append(Finding(kind, entity_id, f"exists, but no {creation} event records its creation", display))
    if state is not None:  # a field the events changed to a value they did not record (UNKNOWN) is not compared
        found += [Finding(kind, entity_id, _differs(name, value, actual[name], state.why[name]), display)
                  for name, value in state.fields.items()
                  if name in actual and value is not UNKNOWN and value != actual[name]]
    return found


def _differs(name: str, expected: Any, actual: Any, why: str) -> str:
    if name == "exists":
        return f"exists, but {why} removed it"
    if name == FINGERPRINT:
        return f"its stored secret hash is not the one {why} recorded ({FINGERPRINT} differs): the secret was replaced"
    return f"{name} is {_plain(actual)!r}, but the last event that set it, {why}, left it {_plain(expected)!r}"


def _plain(value: Any) -> Any:
    """A word as the events and the reports spell it: an enum member (read from a column) as its value."""
    return value.value if isinstance(value, enum.Enum) else value


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    """A time read by a Core select, which bypasses UTCDateTime on some drivers: made aware (UTC)."""
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


def _revocation(row: Row[Any]) -> dict[str, Any]:
    """A SCIM token's, SCIM client's or gateway credential's revocation: whether, and when."""
    return {"revoked": row.revoked_at is not None, "revoked_at": _aware(row.revoked_at)}


def _missing(kind: str, entities: dict[str, Entity]) -> list[Finding]:
    """Entities the events leave in place that the data no longer holds."""
    return [Finding(kind, entity_id, f"the log has it ({state.last}), but the data does not")
            for entity_id, state in entities.items() if state.fields.get("exists", True) and state.last]


def _org(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    org = session.get(Org, x.org_id)
    if org is None:
        return [Finding("org", x.org_id, "the log has it, but the data does not")]
    actual = {name: getattr(org, name) for name in ORG_FIELDS}
    return _check("org", org.id, org.slug, x.org, actual, org.created_at, since, Action.ORG_CREATED)


def _users(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    u = User
    found = []
    for row in _stream(session, select(u.id, u.user_name, u.email, u.external_id, u.display_name, u.given_name,
                                       u.family_name, u.active, u.has_seat, u.deleted_at, u.created_at)
                       .where(u.org_id == x.org_id)):
        actual = {"active": row.active, "deleted": row.deleted_at is not None, "has_seat": row.has_seat,
                  "user_name": row.user_name, "email": row.email, "external_id": row.external_id,
                  "display_name": row.display_name, "given_name": row.given_name, "family_name": row.family_name}
        found += _check("user", row.id, row.user_name, x.users.pop(row.id, None), actual, row.created_at, since,
                        Action.USER_CREATED)
    return found + _missing("user", x.users)


def _grant_name(user_id: str, key: GrantKey) -> str:
    team_id, source, ref = key
    where = f"in team {team_id}" if team_id else "org-wide"
    return f"user {user_id}'s grant {where} from {source}" + (f" (group {ref})" if ref else "")


def _grants(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    """Every grant of a member whose creation is retained: its key (team, source, group) and role."""
    g = RoleGrant
    found = []
    for row in _stream(session, select(g.id, g.user_id, g.team_id, g.role, g.source, g.source_ref)
                       .where(g.org_id == x.org_id)):
        grants = x.grants.get(row.user_id)
        if grants is None:  # a member created before the retained log (or one reported as unexplained)
            continue
        key = (row.team_id, row.source, row.source_ref or "")
        role = grants.pop(key, None)
        if role is None:
            found.append(Finding("role_grant", str(row.id), f"{_grant_name(row.user_id, key)} as {row.role} "
                                 "was given by no event"))
        elif rank(row.role) > rank(role) or (not role.startswith(AT_MOST) and row.role != role):
            found.append(Finding("role_grant", str(row.id), f"{_grant_name(row.user_id, key)} is {row.role}, "
                                 f"but the events leave it {role}"))
    for user_id, left in x.grants.items():
        found += [Finding("role_grant", f"{user_id}/{key[0] or 'org'}",
                          f"the events give {_grant_name(user_id, key)} as {role.removeprefix(AT_MOST)}, "
                          "but the data has no such grant") for key, role in left.items()]
    return found


def _group_members(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    """Members of the IdP groups whose creation is retained."""
    found = []
    for row in _stream(session, select(IdpGroupMember.group_id, IdpGroupMember.user_id).join(
            IdpGroup, IdpGroup.id == IdpGroupMember.group_id).where(IdpGroup.org_id == x.org_id)):
        group_id, user_id = row.group_id, row.user_id
        members = x.group_members.get(group_id)
        if members is None:
            continue
        if user_id in members:
            members.discard(user_id)
        else:
            found.append(Finding("group_member", f"{group_id}/{user_id}",
                                 f"user {user_id} is in group {group_id}, "
                                 "but no group.members_added event put it there"))
    for group_id, left in x.group_members.items():
        found += [Finding("group_member", f"{group_id}/{user_id}", f"the events leave user {user_id} in group "
                          f"{group_id}, but the data does not") for user_id in sorted(left)]
    return found


def _compare(session: Session, since: dt.datetime | None, kind: str, stmt: Executable,
             expected: dict[str, Entity], display: Callable[[Any], str], actual: Callable[[Any], dict[str, Any]],
             creation: str) -> list[Finding]:
    """Compare each row of `stmt` with what the events say of it (`expected`, by id, used up as it
    goes), then name what the log still has that the data does not."""
    found = []
    for row in _stream(session, stmt):
        found += _check(kind, row.id, display(row), expected.pop(row.id, None), actual(row), row.created_at, since,
                        creation)
    return found + _missing(kind, expected)


def _teams(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    return _compare(session, since, "team", select(Team.id, Team.name, Team.created_at).where(Team.org_id == x.org_id),
                    x.teams, lambda row: row.name, lambda row: {"exists": True, "name": row.name}, Action.TEAM_CREATED)


def _groups(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    i = IdpGroup
    return _compare(
        session, since, "group", select(i.id, i.display_name, i.external_id, i.created_at).where(i.org_id == x.org_id),
        x.groups, lambda row: row.display_name,
        lambda row: {"exists": True, "display_name": row.display_name, "external_id": row.external_id},
        Action.GROUP_CREATED)


def _mappings(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    m = GroupMapping
    return _compare(
        session, since, "group_mapping",
        select(m.id, m.group_external_id, m.group_display_name, m.team_id, m.team_role, m.org_role, m.created_at)
        .where(m.org_id == x.org_id),
        x.mappings, lambda row: row.group_display_name or row.group_external_id or "",
        lambda row: {"exists": True, "group_external_id": row.group_external_id,
                     "group_display_name": row.group_display_name, "team_id": row.team_id,
                     "team_role": row.team_role, "org_role": row.org_role},
        Action.GROUP_MAPPING_CREATED)


def _api_keys(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    k = ApiKey
    found = []
    for row in _stream(session, select(k.id, k.prefix, k.user_id, k.team_id, k.scopes, k.status, k.status_reason,
                                       k.created_at, k.role_cap, k.name, k.expires_at, k.rotated_to, k.secret_hash)
                       .where(k.org_id == x.org_id)):
        state = x.api_keys.pop(row.id, None) or x.keys_by_prefix.pop(row.prefix, None)
        actual = {"status": row.status, "status_reason": row.status_reason, "user_id": row.user_id,
                  "team_id": row.team_id, "scopes": sorted(row.scopes or []), "role_cap": row.role_cap,
                  "name": row.name, "expires_at": _aware(row.expires_at), "rotated_to": row.rotated_to,
                  FINGERPRINT: fingerprint(row.secret_hash)}
        found += _check("api_key", row.id, row.prefix, state, actual, row.created_at, since, Action.API_KEY_CREATED)
    return found + _missing("api_key", x.api_keys) + _missing("api_key", x.keys_by_prefix)


def _scim_tokens(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    t = ScimToken
    return _compare(
        session, since, "scim_token", select(t.id, t.name, t.prefix, t.revoked_at, t.created_at, t.secret_hash)
        .where(t.org_id == x.org_id), x.scim_tokens, lambda row: row.prefix,
        lambda row: {**_revocation(row), "name": row.name, "prefix": row.prefix,
                     FINGERPRINT: fingerprint(row.secret_hash)},
        Action.SCIM_TOKEN_CREATED)


def _scim_clients(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    c = ScimClient
    return _compare(
        session, since, "scim_client", select(c.id, c.name, c.client_id, c.revoked_at, c.created_at, c.secret_hash)
        .where(c.org_id == x.org_id), x.scim_clients, lambda row: row.client_id,
        lambda row: {**_revocation(row), "name": row.name, "client_id": row.client_id,
                     FINGERPRINT: fingerprint(row.secret_hash)},
        Action.SCIM_CLIENT_CREATED)


def _invitations(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    i = Invitation
    return _compare(
        session, since, "invitation", select(i.id, i.email, i.role, i.team_id, i.status, i.created_at, i.expires_at,
                                             i.secret_hash, i.invited_by)
        .where(i.org_id == x.org_id), x.invitations, lambda row: row.email,
        lambda row: {"status": row.status, "email": row.email, "role": row.role, "team_id": row.team_id,
                     "expires_at": _aware(row.expires_at), FINGERPRINT: fingerprint(row.secret_hash),
                     "invited_by": row.invited_by},
        Action.INVITATION_CREATED)


def _charges(session: Session, x: Expected, since: dt.datetime | None) -> list[Finding]:
    c = SeatCharge
    return _compare(
        session, since, "seat_charge", select(c.id, c.kind, c.seats, c.amount_cents, c.created_at)
        .where(c.org_id == x.org_id), x.charges, lambda row: row.kind,
        lambda row: {"kind": row.kind, "seats": row.seats, "amount_cents": row.amount_cents},
        "seat.purchased or seat.renewed")
