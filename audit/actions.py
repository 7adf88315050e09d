"""The audit log's own actions: reading, exporting, verifying, checkpointing and purging it.

Their values are what exported logs carry; docs/audit.md section 2 lists them, and a test holds the
two equal. The domain's and the adapters' actions are identity.actions.Action.
"""

from __future__ import annotations

import enum

__all__ = ["AuditAction"]


class AuditAction(enum.StrEnum):
    """An action on the audit log itself, named after its value."""

    AUDIT_READ = "audit.read"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_VERIFIED = "audit.verified"
    AUDIT_CHECKPOINT_CREATED = "audit.checkpoint_created"
    AUDIT_PURGED = "audit.purged"
