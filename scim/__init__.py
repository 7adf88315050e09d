"""SCIM 2.0 protocol adapter (RFC 7643/7644): wire JSON <-> identity services."""

from scim.views import bp

__all__ = ["bp"]
