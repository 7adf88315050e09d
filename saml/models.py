"""SAML tables: per-org SP/IdP settings, pending AuthnRequests, the assertion replay cache, sessions.

Everything that must hold across processes and hosts (DESIGN.md section 7) lives here, in the
database: a pending request is single-use, an assertion id is refused a second time until it
expires, and a signed-in session is a row that sign-out deletes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base

__all__ = ["Base", "SamlConnection", "SamlIdentity", "SamlPendingRequest", "SamlSeenAssertion", "SignInLink",
           "SignInRequest"]


class SamlConnection(Base):
    """One org's service provider (its own key and certificate) and the IdP it trusts."""

    __tablename__ = "saml_connections"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    idp_entity_id: Mapped[str] = mapped_column(String(1024))
    idp_sso_url: Mapped[str] = mapped_column(String(2048))
    idp_slo_url: Mapped[str | None] = mapped_column(String(2048))
    # PEM (base64 body) of every certificate the IdP may sign with: rollover keeps two at once.
    idp_signing_certs: Mapped[list[str]] = mapped_column(JSON, default=list)
    idp_metadata_url: Mapped[str | None] = mapped_column(String(2048))
    metadata_refreshed_at: Mapped[dt.datetime | None]
    # Our side. The private key never leaves this row: not logged, not audited, not in metadata.
    sp_cert_pem: Mapped[str] = mapped_column(Text)
    sp_key_pem: Mapped[str] = mapped_column(Text)
    jit: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_idp_initiated: Mapped[bool] = mapped_column(Boolean, default=False)
    sign_authn_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    want_assertions_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The assertion itself must be signed (a signature on the response around it is not enough);
    # the SP metadata's WantAssertionsSigned says this value (saml.views.metadata).
    want_assertions_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    # {claim: [attribute names, first present wins]}; missing claims fall back to the defaults.
    attribute_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)


class SamlIdentity(Base):
    """An account's persistent identity at an IdP: (IdP entity id, NameID), linked at the first sign-in.

    A persistent NameID (SAML core 2.0 section 8.3.7) is the IdP's own opaque, permanent name for
    a person; the email attribute beside it is often editable by that person. Once linked, the
    NameID alone chooses the account, and the account takes no other NameID from that IdP: the
    two unique keys say so, also to two sign-ins racing. `name_id_key` is the NameID's
    identity.names key; `name_id` is kept as sent, for an admin to read.
    """

    __tablename__ = "saml_identities"

    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    idp_entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    name_id_key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    name_id: Mapped[str] = mapped_column(String(1024))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime]

    __table_args__ = (Index("uq_saml_identities_user", "user_id", "idp_entity_id", unique=True),)


class SamlPendingRequest(Base):
    """An AuthnRequest we sent; the response's InResponseTo must name one, once, before it expires."""

    __tablename__ = "saml_pending_requests"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(36))
    relay_state: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    # Who asked (an IPv4 address, an IPv6 /64): anonymous /login calls are capped per address.
    client_address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_saml_pending_requests_expires", "expires_at"),
                      Index("ix_saml_pending_requests_client", "client_address", "expires_at"))


class SamlSeenAssertion(Base):
    """An assertion id already used to sign in; kept until the assertion could no longer be valid."""

    __tablename__ = "saml_seen_assertions"

    org_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    assertion_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[dt.datetime]

    __table_args__ = (Index("ix_saml_seen_assertions_expires", "expires_at"),)


class SignInLink(Base):
    """A one-time sign-in link (`identity login-link`); only the token's SHA-256 is kept."""

    __tablename__ = "sign_in_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    org_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    # SHA-256 of the cookie of the browser that asked for the link by email (None: issued by an
    # operator, usable from any browser): the link signs in only that browser.
    browser_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_sign_in_links_expires", "expires_at"),)


class SignInRequest(Base):
    """A request for a sign-in link by email, kept a short while to rate-limit per address and per client.

    `address_hash` is the ask's bucket (saml.links._bucket), kept only as a SHA-256: of the address's
    name key, known or not, or of the id of a device known to the members it would mail and that key
    (saml.device_cookies).
    """

    __tablename__ = "sign_in_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address_hash: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]

    __table_args__ = (Index("ix_sign_in_requests_address", "address_hash", "created_at"),
                      Index("ix_sign_in_requests_client", "client_address", "created_at"),
                      Index("ix_sign_in_requests_created", "created_at"))
