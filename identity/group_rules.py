"""Which mapping rule governs an IdP group (DESIGN.md 3.3): the one place that decides it, and the
rule a group is pinned to so that a rename keeps its team."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, literal, or_, select
from sqlalchemy.orm import QueryableAttribute, Session

from identity.models import GroupMapping, IdpGroup


def rule_matches(external_id: Any, display_name_key: Any) -> ColumnElement[bool]:
    """SQL: a rule matches a group of this immutable id and display name's key (identity.names.name_key;
    values or IdpGroup's columns).

    DESIGN 3.3: by the immutable id first, by the display name only as a fallback. A rule that
    names an immutable id is that group's rule: it matches another group by name only when that
    group has no immutable id (Okta pushes groups without one), never a group of a different id
    (a stale rule of a group deleted and made again under the same name).
    """
    external_id, display_name_key = _sql(external_id), _sql(display_name_key)
    by_name = and_(GroupMapping.group_display_name_key == display_name_key,
                   or_(GroupMapping.group_external_id.is_(None), external_id.is_(None)))
    return or_(GroupMapping.group_external_id == external_id, by_name)


def _sql(value: Any) -> Any:
    return value if isinstance(value, (ColumnElement, QueryableAttribute)) else literal(value, String)


def governing_rule(session: Session, group: IdpGroup) -> GroupMapping | None:
    """Return the rule that governs a group: the one place that decides it (DESIGN 3.3).

    Ranked: the rule of the group's own immutable id, then rules naming only its display name,
    then (for a group without an immutable id) rules naming its name and some id; the oldest rule
    first within a rank, so that the answer never depends on the database's row order. When no
    rule matches, the rule the group is pinned to (`IdpGroup.mapping_id`): "a renamed IdP group
    keeps its team", so a group a rule matched by its old name keeps that rule, for the members
    added after the rename as for those before it.
    """
    rank = case((GroupMapping.group_external_id == _sql(group.external_id), 0),
                (GroupMapping.group_external_id.is_(None), 1), else_=2)
    matched = session.scalars(select(GroupMapping).where(
        GroupMapping.org_id == group.org_id, rule_matches(group.external_id, group.display_name_key),
    ).order_by(rank, GroupMapping.created_at, GroupMapping.id).limit(1)).first()
    if matched is None and group.mapping_id is not None:
        return session.get(GroupMapping, group.mapping_id)
    return matched


def pin_rule(session: Session, group: IdpGroup) -> GroupMapping | None:
    """Return the group's governing rule, remembered on the group as the rule its members' grants come from."""
    rule = governing_rule(session, group)
    group.mapping_id = rule.id if rule is not None else None
    return rule
