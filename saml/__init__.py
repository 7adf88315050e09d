"""SAML 2.0 service provider adapter (python3-saml): metadata, login, ACS, logout; /me."""

from saml import session_views, views  # noqa: F401  (their routes register on the blueprint)
from saml.web import bp

__all__ = ["bp"]
