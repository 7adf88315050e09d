"""PATCH of a Group's members (RFC 7644 section 3.5.2), as deltas, never reading the members.

`plan_group_patch` turns a Group PATCH into a `GroupPatchPlan`: the group's other attributes
patched as a whole (scim.patch_resource) and its member changes folded into added, removed or
replace-all, so that adding 1,000 members to a 100,000-member group touches 1,000 rows and never
reads the other 99,000. `remove` with a value listing members (Entra) and a `remove` of a member
already gone are no errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim.errors import InvalidFilter, InvalidPath, InvalidValue
from scim.patch import Operation, parse_operation
from scim.patch_resource import Patcher
from scim.schema import GROUP
from scim.syntax import AttrPath, Compare, Filter, Logical, PatchPath


@dataclass(frozen=True)
class GroupPatchPlan:
    """A Group PATCH as deltas (DESIGN 3.3): apply `resource`, then the member changes.

    Either `replace_all` is None and `added`/`removed` apply to the current members, or
    `replace_all` lists the members exactly (and `added`/`removed` are empty). `resource` is the
    group without `members`, with every other operation applied.
    """

    resource: dict[str, Any]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replace_all: tuple[str, ...] | None = None

    def members_after(self, current: Iterable[str]) -> list[str]:
        """Return the members after the patch, given the current ones (for small groups and tests)."""
        if self.replace_all is not None:
            return list(self.replace_all)
        removed = set(self.removed)
        kept = [m for m in dict.fromkeys(current) if m not in removed]
        return kept + [m for m in self.added if m not in set(kept)]


def plan_group_patch(group: Mapping[str, Any], operations: Sequence[Any]) -> GroupPatchPlan:
    """Turn a Group PATCH into a GroupPatchPlan without reading the group's members.

    `group` is the group's wire JSON; its `members`, if any, are ignored.
    """
    doc = {k: v for k, v in group.items() if k.lower() != "members"}
    patcher, members = Patcher(doc, GROUP), _MemberDelta()
    for raw in operations:
        op = parse_operation(raw)
        if op.path is not None and op.path.attr.name.lower() == "members" and \
                (op.path.uri is None or GROUP.urn(op.path.uri) == GROUP.core_urn):
            members.apply(op)
        elif op.path is None and op.op != "remove" and isinstance(op.value, Mapping):
            rest = {k: v for k, v in op.value.items() if _member_key(k) is None}
            for key in (k for k in op.value if _member_key(k) is not None):
                members.apply(Operation(op.op, PatchPath(AttrPath(None, "members")), op.value[key], True))
            if rest or not op.value:
                patcher.apply(Operation(op.op, None, rest, True))
        else:
            patcher.apply(op)
    return members.plan(patcher.doc)


def only_members(operations: Sequence[Any]) -> bool:
    """Tell whether a Group PATCH changes its members alone (no name, id or other attribute)."""
    for raw in operations:
        op = parse_operation(raw)
        if op.path is not None:
            if op.path.attr.name.lower() != "members" or (op.path.uri is not None and
                                                          GROUP.urn(op.path.uri) != GROUP.core_urn):
                return False
        elif op.op == "remove" or not isinstance(op.value, Mapping) or not op.value or \
                any(_member_key(k) is None for k in op.value):
            return False
    return True


def _member_key(key: str) -> str | None:
    name = key[len(GROUP.core_urn) + 1:] if key.lower().startswith(GROUP.core_urn.lower() + ":") else key
    return name if name.lower() == "members" else None


class _MemberDelta:
    """Folds member operations into added/removed/replace-all, in order."""

    def __init__(self) -> None:
        self.added: dict[str, None] = {}
        self.removed: dict[str, None] = {}
        self.replace_all: dict[str, None] | None = None

    def apply(self, op: Operation) -> None:
        path = op.path
        assert path is not None
        if path.sub_attr is not None and path.sub_attr.lower() != "value":
            if op.op == "remove" or path.value_filter is not None:
                return  # `members[value eq "x"].display`: nothing we keep
            raise InvalidPath(f"members.{path.sub_attr} cannot be set")
        selected = _filter_ids(path.value_filter) if path.value_filter is not None else None
        given = _member_ids(op.value) if op.has_value and op.value is not None else []
        if op.op == "remove":
            if selected is None and not given:
                self.replace([])  # `remove members`: every member (RFC 7644 section 3.5.2.2)
            else:
                self.remove([*(selected or []), *given])
        elif op.op == "add":
            self.add(given or selected or [])
        elif selected is not None:  # `replace members[value eq "x"]` with a new value
            self.remove(selected)
            self.add(given)
        else:
            self.replace(given)

    def add(self, ids: Iterable[str]) -> None:
        for member in ids:
            if self.replace_all is not None:
                self.replace_all[member] = None
            else:
                self.added[member] = None
                self.removed.pop(member, None)

    def remove(self, ids: Iterable[str]) -> None:
        for member in ids:
            if self.replace_all is not None:
                self.replace_all.pop(member, None)
            else:
                self.removed[member] = None
                self.added.pop(member, None)

    def replace(self, ids: Iterable[str]) -> None:
        self.replace_all = dict.fromkeys(ids)
        self.added.clear()
        self.removed.clear()

    def plan(self, resource: dict[str, Any]) -> GroupPatchPlan:
        if self.replace_all is not None:
            return GroupPatchPlan(resource, replace_all=tuple(self.replace_all))
        return GroupPatchPlan(resource, tuple(self.added), tuple(self.removed))


def _member_ids(value: Any) -> list[str]:
    """Read member ids from `[{"value": id}, ...]`, one such object, or bare id strings."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        member = next((v for k, v in item.items() if k.lower() == "value"), None) \
            if isinstance(item, Mapping) else item
        if not isinstance(member, str) or not member.strip():
            raise InvalidValue(f"a member needs a \"value\" with the member's id; got {item!r}")
        ids.append(member.strip())
    return ids


def _filter_ids(node: Filter) -> list[str]:
    """The ids a members filter selects: `value eq "x"`, or several joined with `or`."""
    if isinstance(node, Logical) and node.op == "or":
        return _filter_ids(node.left) + _filter_ids(node.right)
    if isinstance(node, Compare) and node.op == "eq" and node.path.name.lower() == "value" \
            and not node.path.sub_attr and isinstance(node.value, str):
        return [node.value]
    raise InvalidFilter("a members filter selects members by value: members[value eq \"id\"]")
