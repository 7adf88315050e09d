"""Every action the domain and its adapters (scim, saml) record, by the name exported logs carry.

The values are the dotted names of docs/audit.md section 2, and a test holds the two equal: renaming a
member is free, changing a value changes what every export and alert reads. The audit log's own
actions are audit.actions.AuditAction (audit imports nothing from the domain).
"""

from __future__ import annotations

import enum

__all__ = ["Action"]


class Action(enum.StrEnum):
    """An audited change or sign-in, named after its value (`USER_CREATED = "user.created"`)."""

    ORG_CREATED = "org.created"
    ORG_SETTINGS_CHANGED = "org.settings_changed"
    ORG_OWNERSHIP_TRANSFERRED = "org.ownership_transferred"
    ORG_DELETED = "org.deleted"
    TEAM_CREATED = "team.created"
    TEAM_DELETED = "team.deleted"
    TEAM_MEMBER_ADDED = "team.member_added"
    TEAM_MEMBER_REMOVED = "team.member_removed"
    TEAM_MEMBER_ROLE_CHANGED = "team.member_role_changed"
    TEAM_RENAMED = "team.renamed"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    USER_DELETED = "user.deleted"
    USER_REACTIVATED = "user.reactivated"
    USER_UPDATED = "user.updated"
    MEMBER_LAST_OWNER_PROTECTED = "member.last_owner_protected"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    SEAT_ASSIGNED = "seat.assigned"
    SEAT_PURCHASED = "seat.purchased"
    SEAT_REFUSED = "seat.refused"
    SEAT_RELEASED = "seat.released"
    SEAT_RENEWED = "seat.renewed"
    INVITATION_ACCEPTED = "invitation.accepted"
    INVITATION_CREATED = "invitation.created"
    INVITATION_DECLINED = "invitation.declined"
    INVITATION_EXPIRED = "invitation.expired"
    INVITATION_RESENT = "invitation.resent"
    INVITATION_REVOKED = "invitation.revoked"
    MAIL_SENT = "mail.sent"
    MAIL_FAILED = "mail.failed"
    MAIL_EXPIRED = "mail.expired"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    API_KEY_ROTATED = "api_key.rotated"
    GATEWAY_CREDENTIAL_CREATED = "gateway_credential.created"
    GATEWAY_CREDENTIAL_REVOKED = "gateway_credential.revoked"
    SCIM_TOKEN_CREATED = "scim_token.created"
    SCIM_TOKEN_REVOKED = "scim_token.revoked"
    SCIM_CLIENT_CREATED = "scim_client.created"
    SCIM_CLIENT_REVOKED = "scim_client.revoked"
    SCIM_CLIENT_TOKEN_ISSUED = "scim_client.token_issued"
    GROUP_CREATED = "group.created"
    GROUP_DELETED = "group.deleted"
    GROUP_MEMBERS_ADDED = "group.members_added"
    GROUP_MEMBERS_REMOVED = "group.members_removed"
    GROUP_UPDATED = "group.updated"
    GROUP_MAPPING_CREATED = "group_mapping.created"
    GROUP_MAPPING_DELETED = "group_mapping.deleted"
    GROUP_MAPPING_UPDATED = "group_mapping.updated"
    SSO_BREAK_GLASS_USED = "sso.break_glass_used"
    SSO_CONFIGURED = "sso.configured"
    SSO_IDENTITY_LINKED = "sso.identity_linked"
    SSO_LOGGED_OUT = "sso.logged_out"
    SSO_LOGIN_FAILED = "sso.login_failed"
    SSO_LOGIN_LINK_ISSUED = "sso.login_link_issued"
    SSO_LOGIN_SUCCEEDED = "sso.login_succeeded"
    SSO_REQUIRE_SSO_CHANGED = "sso.require_sso_changed"
    SSO_UPDATED = "sso.updated"
