"""The domain's tables: orgs, teams, users, role grants, credentials, invitations, the seat ledger.

Every model is importable from here. The declarative `Base` and `METADATAS` are in
identity.model_base, the IdP's groups and their mapping rules in identity.group_models, the
credentials (SCIM tokens, OAuth clients, API keys, gateway credentials) in identity.credential_models.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from identity.credential_models import ApiKey, GatewayCredential, ScimClient, ScimToken
from identity.group_models import GroupMapping, IdpGroup, IdpGroupMember
from identity.model_base import METADATAS, UUID, Base
from identity.names import name_key
from identity.vocabulary import (
    ChargeKind,
    EnumValue,
    GrantSource,
    InvitationStatus,
    Role,
    SessionMethod,
)

__all__ = [
    "Base", "METADATAS", "Org", "Team", "User", "RoleGrant", "ScimToken", "ScimClient", "ApiKey", "GatewayCredential",
    "Invitation", "SeatCharge", "IdpGroup", "IdpGroupMember", "GroupMapping", "SsoSession", "UserEmail", "OutboxMail",
    "ProvisioningEvent",
]


class Org(Base):
    """A customer organization, with its seat plan and identity settings."""

    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    # Seats (DESIGN 3.4). `seats_used` is maintained under the org row lock by identity.seats,
    # so that no hot path counts members; `identity billing check` recomputes it.
    included_seats: Mapped[int] = mapped_column(Integer, default=3)
    seat_price_cents: Mapped[int] = mapped_column(Integer, default=1000)
    max_seats: Mapped[int | None] = mapped_column(Integer)
    cycle_start: Mapped[dt.datetime]
    cycle_end: Mapped[dt.datetime]
    purchased_seats: Mapped[int] = mapped_column(Integer, default=0)
    seats_used: Mapped[int] = mapped_column(Integer, default=0)
    # Identity settings (DESIGN 3.2, 3.3).
    default_role: Mapped[Role] = mapped_column(EnumValue(Role, 16), default=Role.MEMBER)
    group_sync: Mapped[str] = mapped_column(String(16), default="mirror")
    idp_may_grant_owner: Mapped[bool] = mapped_column(Boolean, default=False)
    require_sso: Mapped[bool] = mapped_column(Boolean, default=False)
    audit_retention_days: Mapped[int] = mapped_column(Integer, default=365)
    # Set when the org is deleted (identity.org_lifecycle): the row stays for its audit log and slug.
    deleted_at: Mapped[dt.datetime | None]


class Team(Base):
    """A team; its id is a slug of its first name plus a random suffix and never changes."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # identity.names.name_key(name), kept by `_keep_name_key`: what a team's name compares by (unique
    # per org; a mirrored group adopts the team of its name by it, as IdpGroup.display_name_key), the
    # same on every database, whose lower() leaves `É` and `İ` alone (SQLite, PostgreSQL's C collation).
    # Longer than name: case folding can lengthen it (ß folds to ss).
    name_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[dt.datetime]
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    @validates("name")
    def _keep_name_key(self, _name: str, value: str) -> str:
        """Keep the key with the name on every assignment, so that no writer can forget it."""
        self.name_key = name_key(value)
        return value

    __table_args__ = (Index("uq_teams_org_name", "org_id", "name_key", unique=True),)


class User(Base):
    """An identity within one org. Deleted users stay as tombstones for the audit history."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    user_name: Mapped[str] = mapped_column(String(320))
    # identity.names.name_key(user_name), kept by `_keep_user_name_key`: what userName compares by.
    # Longer than user_name: case folding can lengthen a name (ß folds to ss).
    user_name_key: Mapped[str] = mapped_column(String(1024))
    email: Mapped[str | None] = mapped_column(String(320))
    external_id: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(320))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    has_seat: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[GrantSource] = mapped_column(EnumValue(GrantSource, 16))
    # Every other attribute the IdP sent, kept and returned as it came.
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    deleted_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    grants: Mapped[list[RoleGrant]] = relationship(back_populates="user", lazy="raise_on_sql")

    @validates("user_name")
    def _keep_user_name_key(self, _name: str, value: str) -> str:
        """Keep the key with the name on every assignment, so that no writer can forget it."""
        self.user_name_key = name_key(value)
        return value

    __table_args__ = (
        # userName is unique per org among users that are not deleted, compared by its key (NFC,
        # case-folded; identity.names), the same on every database.
        Index(
            "uq_users_org_user_name", "org_id", "user_name_key", unique=True,
            sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL"),
        ),
        # The same key over removed users: "was this userName removed?" (SAML JIT) is a probe, not a scan.
        Index(
            "ix_users_org_removed_user_name", "org_id", "user_name_key",
            sqlite_where=text("deleted_at IS NOT NULL"), postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        Index("ix_users_org_email", "org_id", func.lower(text("email"))),
        # Live users only, like the userName key: an `externalId eq` lookup's whole WHERE fits it (0017e).
        Index("ix_users_org_live_external_id", "org_id", "external_id",
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
        # The SCIM list order, over live users only, so a deep page skips index entries alone.
        Index("ix_users_org_created", "org_id", "created_at", "id",
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )


class UserEmail(Base):
    """One of a user's email addresses, as SCIM shows them, kept so that filters on them use an index.

    Derived from `User.attributes` and `User.email` by identity.emails whenever either changes;
    Okta and Entra ID can match users on `emails[type eq "work"].value`, which must not read
    every user of a large org. `value` is the address's key (identity.names.name_key): emails compare
    as userNames do, case-folded and normalized.
    """

    __tablename__ = "user_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(320))
    type: Mapped[str | None] = mapped_column(String(64))
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    display: Mapped[str | None] = mapped_column(String(320))

    __table_args__ = (
        Index("ix_user_emails_value", "value"),  # a filter's candidates; the users query keeps to the org
        Index("ix_user_emails_user", "user_id"),
    )


class RoleGrant(Base):
    """One source's grant of a role, org-wide (team_id is NULL) or in one team.

    A user's role is the highest of its grants; removing a source removes exactly its grants.
    `source_ref` names the group, invitation or request that gave it.
    """

    __tablename__ = "role_grants"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"))
    role: Mapped[Role] = mapped_column(EnumValue(Role, 16))
    source: Mapped[GrantSource] = mapped_column(EnumValue(GrantSource, 16))
    source_ref: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[dt.datetime]

    user: Mapped[User] = relationship(back_populates="grants")

    __table_args__ = (
        Index("ix_role_grants_user", "user_id", "team_id"),
        # By team, then in the order grants are made (migration 0020): a team's members are paged
        # and counted (up to a cap) along it, in the order they joined. Not (team, user), for the
        # same reason as IdpGroupMember's key: that would put a big team's new grants all over its
        # range (tests/identity/test_group_pages.py). One user's grants: ix_role_grants_user.
        Index("ix_role_grants_team_grant", "team_id", "id", "user_id"),
        Index("ix_role_grants_org_role", "org_id", "role", "team_id"),
        Index("ix_role_grants_source_ref", "source_ref"),
    )


class Invitation(Base):
    """An invitation by email, accepted with a one-time link whose token is kept hashed."""

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    # No index of its own: ix_invitations_org_email_key leads with it (migration 0026).
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    email: Mapped[str] = mapped_column(String(320))
    # identity.names.name_key(email), kept by `_keep_email_key`: what "is this address invited?" compares
    # by, as a member's addresses do (`Ann@X.test` and `ann@x.test` are one person). Longer than email:
    # case folding can lengthen it (ß folds to ss).
    email_key: Mapped[str] = mapped_column(String(1024))
    role: Mapped[Role] = mapped_column(EnumValue(Role, 16))
    # None once its team is deleted: the row stays as a record (revoked, or no longer pending).
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[InvitationStatus] = mapped_column(EnumValue(InvitationStatus, 16), default=InvitationStatus.PENDING)
    invited_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]

    @validates("email")
    def _keep_email_key(self, _name: str, value: str) -> str:
        """Keep the key with the address on every assignment, so that no writer can forget it."""
        self.email_key = name_key(value)
        return value

    __table_args__ = (
        # "Has this address a pending invitation here?" (identity.invitations, asked under the org's lock
        # before every invitation) reads the org's invitations to that address only; every read of the
        # org's invitations reads it by org_id.
        Index("ix_invitations_org_email_key", "org_id", "email_key"),
    )


class SeatCharge(Base):
    """A row of the seat ledger: a prorated purchase or a renewal, in integer cents."""

    __tablename__ = "seat_charges"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    kind: Mapped[ChargeKind] = mapped_column(EnumValue(ChargeKind, 16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    seats: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    cycle_start: Mapped[dt.datetime]
    cycle_end: Mapped[dt.datetime]
    user_id: Mapped[str | None] = mapped_column(String(36))
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]

    __table_args__ = (
        Index("ix_seat_charges_org_cycle", "org_id", "cycle_start"),
        # One renewal per org and cycle, whatever runs it and however often.
        Index(
            "uq_seat_charges_renewal", "org_id", "cycle_start", unique=True,
            sqlite_where=text("kind = 'seat_renewal'"), postgresql_where=text("kind = 'seat_renewal'"),
        ),
    )


class SsoSession(Base):
    """A signed-in browser session (SAML or break-glass). The cookie carries the token; only its SHA-256 is kept."""

    __tablename__ = "sso_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    org_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    method: Mapped[SessionMethod] = mapped_column(EnumValue(SessionMethod, 16))
    name_id: Mapped[str | None] = mapped_column(String(512))
    name_id_key: Mapped[str | None] = mapped_column(String(1024))  # identity.names.name_key(name_id): SLO finds it
    name_id_format: Mapped[str | None] = mapped_column(String(256))
    session_index: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]

    __table_args__ = (
        Index("ix_sso_sessions_user", "user_id"),
        Index("ix_sso_sessions_org_name_id_key", "org_id", "name_id_key"),
        Index("ix_sso_sessions_expires", "expires_at"),
    )


class OutboxMail(Base):
    """A mail to send (an invitation, a sign-in link): kept until delivered, so none is lost when mail is down.

    `body` and `link` hold a live link while the mail is undelivered; they are cleared once it is
    sent, cancelled (its invitation revoked or resent) or its link has expired.
    """

    __tablename__ = "outbox_mails"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    kind: Mapped[str] = mapped_column(String(32))  # invitation, sign_in_link
    ref_type: Mapped[str] = mapped_column(String(32))  # what the mail is about: invitation, user
    ref_id: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    # name_key(recipient), the key the org's cap on mails to one address counts it under
    # (identity.outbox.ensure_under_cap); None: a mail outside the cap, or queued before it (0027).
    cap_key: Mapped[str | None] = mapped_column(String(1024))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, failed, sent, cancelled, expired
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    # A sender claims a mail until this moment, so that two processes never send it twice.
    claimed_until: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_outbox_mails_org_created", "org_id", "created_at"),
        Index("ix_outbox_mails_status", "status", "created_at"),
        Index("ix_outbox_mails_ref", "ref_id"),
        Index("ix_outbox_mails_org_cap_key", "org_id", "cap_key", "created_at"),
    )


class ProvisioningEvent(Base):
    """A recent SCIM request or SAML sign-in of an org, as the IdP setup page's status shows it.

    Bookkeeping for the IT admin's debugging (identity.provisioning_log), not history: a few of
    the newest rows per org, protocol and outcome are kept, older ones deleted as new ones come.
    Never a body, a token or an assertion: the route (its URL rule), the status and the refusal's
    reason, cut short. No foreign key: the adapters write it after their own transaction.
    """

    __tablename__ = "provisioning_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(36))
    protocol: Mapped[str] = mapped_column(String(8))  # scim, saml
    outcome: Mapped[str] = mapped_column(String(8))  # success, refused
    occurred_at: Mapped[dt.datetime]
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(500))
    credential: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_provisioning_events_org", "org_id", "protocol", "outcome", "id"),)
