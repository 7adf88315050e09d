"""The credentials, each kept as a hash only: SCIM bearer tokens and OAuth clients (identity.scim_credentials),
API keys and team service keys (identity.keys), the gateway's service credentials (identity.gateway)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from identity.model_base import UUID, Base
from identity.vocabulary import EnumValue, KeyStatus, KeyStatusReason, Role


class ScimToken(Base):
    """A long-lived SCIM bearer token; only its SHA-256 is kept."""

    __tablename__ = "scim_tokens"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    created_by_type: Mapped[str | None] = mapped_column(String(32))
    created_by_id: Mapped[str | None] = mapped_column(String(80))
    created_by: Mapped[str | None] = mapped_column(String(200))  # the creator's display name then


class ScimClient(Base):
    """An OAuth 2.0 client-credentials client for SCIM (Entra's gallery); only its secret's hash is kept."""

    __tablename__ = "scim_clients"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]  # when it was last issued an access token
    created_by_type: Mapped[str | None] = mapped_column(String(32))
    created_by_id: Mapped[str | None] = mapped_column(String(80))
    created_by: Mapped[str | None] = mapped_column(String(200))  # the creator's display name then


class ApiKey(Base):
    """A team API key of a member, or a team service key (no member); only its SHA-256 is kept, its
    prefix identifies it."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    # None once its team is deleted: the row stays as a record (revoked, or no longer pending).
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    # None for a team service key: it belongs to its team, and no person's leaving touches it.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[KeyStatus] = mapped_column(EnumValue(KeyStatus, 16), default=KeyStatus.ACTIVE)
    status_reason: Mapped[KeyStatusReason | None] = mapped_column(EnumValue(KeyStatusReason, 32))
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    # Set on a rotated key: it keeps working until then, and answers `expired` after.
    expires_at: Mapped[dt.datetime | None]
    rotated_to: Mapped[str | None] = mapped_column(String(36))
    created_by_type: Mapped[str | None] = mapped_column(String(32))
    created_by_id: Mapped[str | None] = mapped_column(String(80))
    created_by: Mapped[str | None] = mapped_column(String(200))  # the creator's display name then
    # A key made for its holder by someone else (who saw its secret) acts at most at the holder's role
    # then, which its maker outranked: a later promotion of the holder does not lift it (DESIGN 3.2).
    # None: no cap (a key its holder made, or the operator's).
    role_cap: Mapped[Role | None] = mapped_column(EnumValue(Role, 16))

    __table_args__ = (Index("ix_api_keys_user", "user_id", "status"), Index("ix_api_keys_org", "org_id", "team_id"))


class GatewayCredential(Base):
    """The operator's service credential with which a gateway verifies API keys of every org."""

    __tablename__ = "gateway_credentials"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
