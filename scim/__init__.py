"""SCIM 2.0 protocol adapter (RFC 7643/7644): wire JSON <-> identity services."""

from scim import bulk, discovery_views, group_views, user_views  # noqa: F401  (their routes register on the blueprint)
from scim.web import bp

__all__ = ["bp"]
