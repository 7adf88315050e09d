"""SAML 2.0 service provider adapter (python3-saml): metadata, login, ACS, logout; /me."""

from saml.views import bp

__all__ = ["bp"]
