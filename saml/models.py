"""SAML tables (per-org SP/IdP settings, pending requests, replay cache). Filled in by the SAML work."""

from audit.models import Base

__all__ = ["Base"]
