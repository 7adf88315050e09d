"""The gateway's key check (DESIGN.md 3.7): who an API key speaks for, in one read of one statement.

The gateway authenticates with the operator's service credential (`gw_...`, made by `identity
gateway credential create`), valid for every org. The check writes nothing (not even last-used
time), takes no lock and sends one SELECT: the credential's row by its prefix, joined with the key's
row by its prefix, its org, its holder and the holder's role grants (one row per grant) and, for the
spend controls of DESIGN.md 3.8, the key's team wallet and the key's and member's spending limits
(each at most one row, by a unique key). Both lookups use unique indexes. On PostgreSQL the
statement runs on an autocommit connection (a plain snapshot read: no BEGIN, no row lock, never
queued behind a writer); on SQLite it runs outside any transaction under WAL, where readers never
wait for the writer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import OPERATOR_STREAM, Target, hold_chain
from audit.models import AuditEvent
from identity import tokens
from identity.actions import Action
from identity.driver_reads import DriverRead
from identity.errors import Unauthenticated
from identity.key_revocation import grace_ended
from identity.keys import SERVICE_KEY_ROLE, Issued
from identity.models import ApiKey, GatewayCredential, Org, RoleGrant, User
from identity.roles import allowed_scopes, capped, highest
from identity.vocabulary import KeyStatus, Role
from identity.wallet_models import SpendLimit, Wallet
from identity.wallet_periods import period_at, refusal_in_force, remaining


class Refusal(StrEnum):
    """Why a presented key is not valid: the `reason` of a refused check (stable, documented)."""

    UNKNOWN = "unknown"  # not of our form, no such key, or the secret does not match
    REVOKED = "revoked"  # revoked for good (by hand, member removed or left the team, team deleted)
    BLOCKED = "blocked"  # its member is deactivated; reactivation lifts it
    EXPIRED = "expired"  # rotated, and the grace period has ended
    # The key is valid but may not spend (DESIGN 3.8): a debit was refused, until a credit lands ...
    BALANCE_EXHAUSTED = "balance_exhausted"
    # ... or until the limit rises or the period turns (`resets_at`).
    SPENDING_LIMIT_REACHED = "spending_limit_reached"


@dataclass(frozen=True)
class KeyCheck:
    """The answer of one check: `identity` when valid, else `reason`, with `details` for a spend refusal
    (`resets_at`, `scope`, `budget`). Extend with fields; the web layer renders `details` beside `reason`."""

    reason: Refusal | None = None
    identity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


_gw = GatewayCredential.__table__.c
_key = ApiKey.__table__.c
_org = Org.__table__.c
_user = User.__table__.c
_grant = RoleGrant.__table__.c
_wallet = Wallet.__table__.c
_key_limit = SpendLimit.__table__.alias("key_limit")
_member_limit = SpendLimit.__table__.alias("member_limit")
# One statement: no gateway row, no answer (401); one row per grant of the holder otherwise.
_CHECK = (
    select(_gw.secret_hash.label("gw_hash"), _key.id, _key.secret_hash, _key.status, _key.expires_at,
           _key.team_id, _key.user_id, _key.scopes, _key.role_cap, _org.id.label("org_id"), _org.slug,
           _org.default_role, _org.deleted_at.label("org_deleted_at"), _user.user_name, _user.active,
           _user.deleted_at, _grant.team_id.label("grant_team"),
           _grant.role.label("grant_role"), _org.created_at.label("org_created"),
           _wallet.balance_micros, _wallet.period_start, _wallet.period_spend_micros, _wallet.spend_limit_micros,
           _wallet.discount_percent, _wallet.refusal, _wallet.refused_period_start,
           _key_limit.c.limit_micros.label("kl_limit"), _key_limit.c.spend_micros.label("kl_spend"),
           _key_limit.c.period_start.label("kl_period"), _key_limit.c.refused_period_start.label("kl_refused"),
           _member_limit.c.limit_micros.label("ml_limit"), _member_limit.c.spend_micros.label("ml_spend"),
           _member_limit.c.period_start.label("ml_period"),
           _member_limit.c.refused_period_start.label("ml_refused"))
    .select_from(GatewayCredential.__table__)
    .outerjoin(ApiKey.__table__, _key.prefix == bindparam("key_prefix"))
    .outerjoin(Org.__table__, _org.id == _key.org_id)
    .outerjoin(User.__table__, _user.id == _key.user_id)
    .outerjoin(RoleGrant.__table__, and_(_grant.user_id == _key.user_id,
                                         (_grant.team_id.is_(None)) | (_grant.team_id == _key.team_id)))
    .outerjoin(Wallet.__table__, _wallet.team_id == _key.team_id)
    # A rotated key in its grace spends under its successor's limit (identity.wallet_controls.pass_key_limit).
    .outerjoin(_key_limit, and_(_key_limit.c.team_id == _key.team_id, _key_limit.c.subject_type == "key",
                                _key_limit.c.subject_id == func.coalesce(_key.rotated_to, _key.id)))
    .outerjoin(_member_limit, and_(_member_limit.c.team_id == _key.team_id, _member_limit.c.subject_type == "member",
                                   _member_limit.c.subject_id == _key.user_id))
    .where(_gw.prefix == bindparam("gw_prefix"), _gw.revoked_at.is_(None))
)
_CHECK_READ = DriverRead(_CHECK)  # on the driver's cursor: SQLAlchemy's execution cost more than the check


def check_key(conn: Connection, credential: str, secret: str) -> KeyCheck:
    """Verify the gateway's `credential` (Unauthenticated if wrong) and tell whom `secret` speaks for."""
    gw_prefix = tokens.split_prefix(credential or "")
    key_prefix = tokens.split_prefix(secret or "") or ""
    rows = [] if gw_prefix is None or not gw_prefix.startswith("gw_") else _CHECK_READ.rows(
        conn, gw_prefix=gw_prefix, key_prefix=key_prefix)
    if not rows or not tokens.matches(credential, rows[0].gw_hash):
        raise Unauthenticated("a gateway credential is required: Authorization: Bearer gw_...")
    return _answer(rows, secret)


_CREDENTIAL = select(GatewayCredential.id, GatewayCredential.name, GatewayCredential.secret_hash).where(
    GatewayCredential.prefix == bindparam("prefix"), GatewayCredential.revoked_at.is_(None))


def gateway_actor(conn: Connection | Session, credential: str) -> Actor:
    """Verify a gateway credential (Unauthenticated if wrong or revoked) and return the actor it acts as:
    the operator's system, named by the credential (`gateway:<id>`), for the events of the usage it posts."""
    prefix = tokens.split_prefix(credential or "")
    row = None if prefix is None or not prefix.startswith("gw_") else conn.execute(
        _CREDENTIAL, {"prefix": prefix}).first()
    if row is None or not tokens.matches(credential, row.secret_hash):
        raise Unauthenticated("a gateway credential is required: Authorization: Bearer gw_...")
    return credential_actor(row.id, row.name)


def credential_actor(credential_id: str, name: str) -> Actor:
    """The actor a gateway credential acts as: the operator's system, named by the credential."""
    return Actor(type="system", id=f"gateway:{credential_id}", display=f"gateway {name}")


def _answer(rows: list[Any], secret: str) -> KeyCheck:
    first = rows[0]
    if first.id is None or not tokens.matches(secret, first.secret_hash):
        return KeyCheck(Refusal.UNKNOWN)
    if first.status == KeyStatus.REVOKED or first.team_id is None or first.org_deleted_at is not None:
        return KeyCheck(Refusal.REVOKED)  # a deleted org's keys too, a team's own among them
    if first.status == KeyStatus.BLOCKED:
        return KeyCheck(Refusal.BLOCKED)
    if grace_ended(first.expires_at):
        return KeyCheck(Refusal.EXPIRED)
    if first.user_id is None:
        return _spend_state(first, _identity(first, None, SERVICE_KEY_ROLE, SERVICE_KEY_ROLE))
    if not first.active or first.deleted_at is not None:
        return KeyCheck(Refusal.BLOCKED if first.deleted_at is None else Refusal.REVOKED)
    grants = [(row.grant_team, Role(row.grant_role)) for row in rows if row.grant_role is not None]
    # A key made for its holder by someone else acts at most at the holder's role then (identity.keys).
    role = capped(highest(r for team, r in grants if team is None) or Role(first.default_role), first.role_cap)
    team_role = highest(r for team, r in grants if team is not None)
    if team_role is None:
        return KeyCheck(Refusal.REVOKED)  # the member has left the key's team
    return _spend_state(first, _identity(first, {"id": first.user_id, "userName": first.user_name}, role, team_role))


def _spend_state(row: Any, identity: dict[str, Any]) -> KeyCheck:
    """Add the key's budget to a valid answer, or refuse it while a refused debit's refusal lasts (DESIGN 3.8).

    `remaining_micros` is what the key may still spend (identity.wallet_periods.remaining, which the usage
    answer says too). None of it is written or locked.
    """
    start, end = period_at(_utc(row.org_created), clock.now())
    limits, reached = [], []
    team = None
    if row.balance_micros is not None:
        spent = row.period_spend_micros if _utc(row.period_start) == start else 0
        team = (row.refusal, _optional_utc(row.refused_period_start))
        if row.spend_limit_micros is not None:
            limits.append({"scope": "team", "limit_micros": row.spend_limit_micros, "spend_micros": spent})
    for scope, limit, spend, period, refused in (("key", row.kl_limit, row.kl_spend, row.kl_period, row.kl_refused),
                                                 ("member", row.ml_limit, row.ml_spend, row.ml_period, row.ml_refused)):
        if limit is not None:
            current = _utc(period) == start
            limits.append({"scope": scope, "limit_micros": limit, "spend_micros": spend if current else 0})
            reached.append((scope, _utc(period), _optional_utc(refused)))
    balance = row.balance_micros or 0
    left = remaining(balance, ((lim["limit_micros"], lim["spend_micros"]) for lim in limits))
    budget = {"balance_micros": balance, "remaining_micros": left, "discount_percent": row.discount_percent or 0,
              "limits": limits, "period": {"start": start.isoformat(), "end": end.isoformat()}}
    refusal = refusal_in_force(start, team, reached)
    if refusal is not None:
        return KeyCheck(Refusal(refusal[0]), details={"resets_at": end.isoformat(), "scope": refusal[1],
                                                      "budget": budget})
    return KeyCheck(identity={**identity, "budget": budget})


def _optional_utc(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else _utc(moment)


def _identity(row: Any, member: dict[str, str] | None, role: Role, team_role: Role) -> dict[str, Any]:
    # A holder demoted since the key was made keeps only the scopes their role now allows.
    scopes = [scope for scope in row.scopes if scope in allowed_scopes(role)]
    return {"key_id": row.id, "kind": "personal" if member else "service",
            "org": {"id": row.org_id, "slug": row.slug}, "team_id": row.team_id, "member": member,
            "role": str(role), "team_role": str(team_role), "scopes": scopes}


def _utc(moment: dt.datetime) -> dt.datetime:
    """Core rows bypass UTCDateTime's result processing on some drivers: make the time aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def begin_chain(session: Session, actor: Actor) -> int:
    """Record, once, the gateway credentials the operators' chain does not yet explain; return how many.

    Reconciliation (identity.reconcile.reconcile_operator) then holds every credential to an event,
    with no exemption by `created_at`, which is whatever an INSERT says. The chain begins with
    `operator.chain_begun` (the mark that this was done, even for no credential) and one
    `gateway_credential.baseline` per credential then existing. A chain begun before 2026-12-08
    has events but no mark: its credentials made before its first event and named by none (a release
    that did not audit them made them) are the ones recorded, once, by `identity db upgrade` or
    `serve` (identity.web.keys_cli).
    """
    hold_chain(session, OPERATOR_STREAM)  # two processes beginning it at once: the second waits, then reads the mark
    e, g = AuditEvent, GatewayCredential
    ours = (e.org_id == OPERATOR_STREAM)
    if session.scalar(select(e.seq).where(ours, e.action == Action.OPERATOR_CHAIN_BEGUN).limit(1)) is not None:
        return 0
    first = session.scalar(select(e.occurred_at).where(ours).order_by(e.seq).limit(1))
    named = select(e.target_id).where(ours, e.target_type == "gateway_credential")
    rows = select(g).where(g.id.not_in(named)).order_by(g.created_at, g.id)
    found = list(session.scalars(rows if first is None else rows.where(g.created_at < first)))
    record(session, actor, Action.OPERATOR_CHAIN_BEGUN, Target("operator_chain", OPERATOR_STREAM),
           {"credentials": len(found)}, org_id=OPERATOR_STREAM)
    for row in found:
        record(session, actor, Action.GATEWAY_CREDENTIAL_BASELINE, Target("gateway_credential", row.id, row.prefix),
               {"name": row.name, "revoked": row.revoked_at is not None,
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at is not None else None,
                tokens.FINGERPRINT: tokens.fingerprint(row.secret_hash)}, org_id=OPERATOR_STREAM)
    return len(found)


def create_credential(session: Session, actor: Actor, *, name: str = "gateway") -> Issued:
    """Make a gateway service credential (the operator's, for every org); its secret is shown once.

    An operator's act, not an org's: it is audited in the operators' own chain (OPERATOR_STREAM),
    which `identity audit export|verify --org @operator` reads.
    """
    begin_chain(session, actor)
    new = tokens.generate("gw")
    row = GatewayCredential(id=str(uuid.uuid4()), name=(name or "").strip()[:200] or "gateway", prefix=new.prefix,
                            secret_hash=new.hash, created_at=clock.now())
    session.add(row)
    record(session, actor, Action.GATEWAY_CREDENTIAL_CREATED, Target("gateway_credential", row.id, row.prefix),
           {"name": row.name, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=OPERATOR_STREAM)
    return Issued(row.id, row.prefix, new.plaintext)


def revoke_credential(session: Session, actor: Actor, credential_id: str) -> bool:
    """Revoke a gateway credential by id or prefix (audited in the operators' chain); tell whether one was live."""
    begin_chain(session, actor)
    row = session.scalars(select(GatewayCredential).where(
        (GatewayCredential.id == credential_id) | (GatewayCredential.prefix == credential_id))).first()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = clock.now()
    record(session, actor, Action.GATEWAY_CREDENTIAL_REVOKED, Target("gateway_credential", row.id, row.prefix),
           {"name": row.name, "revoked_at": row.revoked_at.isoformat()}, org_id=OPERATOR_STREAM)
    return True


def list_credentials(session: Session) -> list[GatewayCredential]:
    """Return every gateway credential, oldest first (never a secret)."""
    return list(session.scalars(select(GatewayCredential).order_by(GatewayCredential.created_at)))
