"""The IdP's groups (SCIM Groups, SAML group claims), their members, and the rules that map them
onto teams and roles (DESIGN.md 3.3; identity.groups, identity.group_membership and
identity.mappings apply them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, text
from sqlalchemy.orm import Mapped, mapped_column, validates

from identity.model_base import UUID, Base
from identity.names import name_key
from identity.vocabulary import EnumValue, Role


class IdpGroup(Base):
    """A group pushed by the IdP (SCIM Groups); mapped onto teams and roles by GroupMapping."""

    __tablename__ = "idp_groups"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    display_name: Mapped[str] = mapped_column(String(255))
    # identity.names.name_key(display_name), kept by `_keep_display_name_key`: what a group's name
    # compares by (unique per org; SAML claims, mapping rules, SCIM's displayName filter), the same
    # on every database, whose lower() leaves `É` and `İ` alone (SQLite, PostgreSQL's C collation).
    # Longer than display_name: case folding can lengthen it (ß folds to ss).
    display_name_key: Mapped[str] = mapped_column(String(1024))
    external_id: Mapped[str | None] = mapped_column(String(255))
    # The team this group became under `group_sync = mirror`; kept across renames of the group.
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The rule its members' grants come from (identity.group_rules.governing_rule), kept across renames of
    # the group: "a renamed IdP group keeps its team" (DESIGN 3.3). NULL: no rule governs it.
    mapping_id: Mapped[str | None] = mapped_column(ForeignKey("group_mappings.id", ondelete="SET NULL"))
    # Made by a SAML sign-in's group claim (identity.group_claims), until the IdP's SCIM create adopts it.
    from_claim: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    @validates("display_name")
    def _keep_display_name_key(self, _name: str, value: str) -> str:
        """Keep the key with the name on every assignment, so that no writer can forget it."""
        self.display_name_key = name_key(value)
        return value

    __table_args__ = (
        Index("uq_idp_groups_org_name", "org_id", "display_name_key", unique=True),
        Index("ix_idp_groups_org_external_id", "org_id", "external_id"),
        Index("ix_idp_groups_org_team", "org_id", "team_id"),
        Index("ix_idp_groups_org_mapping", "org_id", "mapping_id"),
    )


class IdpGroupMember(Base):
    """Membership of a user in an IdP group, one row each, so changes touch only their rows.

    Keyed by (user, group), not (group, user): under the latter, 1,000 members added to a group
    of 100,000 land on some 800 different leaf pages of the group's range, against a dozen in a
    group of 1,000. A user's place in the (user, group) key does not depend on the group's size,
    and the index by group alone orders a group's rows by when they were added (the row id on
    SQLite, the heap position on PostgreSQL), so new members go at the end of the group's range.
    """

    __tablename__ = "idp_group_members"

    group_id: Mapped[str] = mapped_column(ForeignKey("idp_groups.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))

    __table_args__ = (PrimaryKeyConstraint("user_id", "group_id"), Index("ix_idp_group_members_group", "group_id"))


class GroupMapping(Base):
    """A rule: IdP group (by immutable id, else display name) -> team and team role, org role."""

    __tablename__ = "group_mappings"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id"))
    group_external_id: Mapped[str | None] = mapped_column(String(255))
    group_display_name: Mapped[str | None] = mapped_column(String(255))
    # name_key(group_display_name), kept by `_keep_group_display_name_key`: compared with IdpGroup.display_name_key.
    group_display_name_key: Mapped[str | None] = mapped_column(String(1024))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"))
    team_role: Mapped[Role | None] = mapped_column(EnumValue(Role, 16))
    org_role: Mapped[Role | None] = mapped_column(EnumValue(Role, 16))
    created_at: Mapped[dt.datetime]

    @validates("group_display_name")
    def _keep_group_display_name_key(self, _name: str, value: str | None) -> str | None:
        """Keep the key with the name on every assignment, so that no writer can forget it."""
        self.group_display_name_key = None if value is None else name_key(value)
        return value

    __table_args__ = (
        Index("ix_group_mappings_org_external", "org_id", "group_external_id"),
        Index("ix_group_mappings_org_name", "org_id", "group_display_name_key"),
    )
