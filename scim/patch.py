"""PATCH (RFC 7644 section 3.5.2) on SCIM resources held as plain dicts, their wire JSON.

`apply_patch` returns the patched copy of a User (or any resource small enough to hold whole);
`plan_group_patch` turns a Group PATCH into member deltas, so that adding 1,000 members to a
100,000-member group touches 1,000 rows and never reads the other 99,000.

Read strictly where it matters (ids, meta, required attributes, types) and tolerantly where Okta
and Entra ID are known to deviate: capitalised ops, "True"/"False" strings for booleans, path-less
add/replace whose value keys are paths (`name.givenName`, URN-prefixed, even with a filter), a
`replace` on `emails[type eq "work"].value` when there is no work email (it adds one), the manager
sent as a bare id, and cleared with "" or null, `remove` with a value listing members, and a
`remove` of a member already gone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scim.errors import InvalidFilter, InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget
from scim.schema import GROUP, USER, Attribute, ResourceSchema
from scim.syntax import AttrPath, Compare, Filter, Logical, Not, PatchPath, parse_datetime, parse_path

PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OPS = ("add", "remove", "replace")
_EMPTY: tuple[Any, ...] = (None, "", [], {})


@dataclass(frozen=True)
class Operation:
    """One PATCH operation, validated: `op` lowercased, `path` parsed (None when path-less)."""

    op: str
    path: PatchPath | None
    value: Any = None
    has_value: bool = False


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


def parse_operations(body: Any) -> list[Operation]:
    """Validate a PatchOp request body (RFC 7644 section 3.5.2) and parse its operations."""
    if not isinstance(body, Mapping):
        raise InvalidSyntax("a PATCH body is a JSON object with \"Operations\"")
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_OP_SCHEMA not in schemas):
        raise InvalidSyntax(f"schemas must be [\"{PATCH_OP_SCHEMA}\"]")
    operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise InvalidSyntax("\"Operations\" must be a non-empty array")
    return [parse_operation(op) for op in operations]


def parse_operation(raw: Any) -> Operation:
    """Parse one operation object; `op` is case-insensitive (Entra sends "Add", "Replace")."""
    if isinstance(raw, Operation):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidSyntax("each operation is a JSON object")
    fields = {str(k).lower(): v for k, v in raw.items()}
    op = fields.get("op")
    if not isinstance(op, str) or op.lower() not in OPS:
        raise InvalidSyntax(f"op must be one of add, remove, replace; got {op!r}")
    path = fields.get("path")
    if path is not None and not isinstance(path, str):
        raise InvalidPath("path must be a string")
    parsed = _parse_path(path) if path not in (None, "") else None
    return Operation(op.lower(), parsed, fields.get("value"), "value" in fields)


def _parse_path(text: str) -> PatchPath:
    try:
        return parse_path(text)
    except InvalidFilter as exc:
        raise InvalidPath(f"invalid path {text!r}: {exc.detail}") from None


def apply_patch(resource: Mapping[str, Any], operations: Sequence[Any],
                schema: ResourceSchema = USER) -> dict[str, Any]:
    """Return a copy of `resource` with the operations applied in order (RFC 7644 3.5.2.1-3).

    Raises NoTarget, Mutability, InvalidValue, InvalidPath, InvalidSyntax or InvalidFilter.
    """
    patcher = _Patcher(resource, schema)
    for raw in operations:
        patcher.apply(parse_operation(raw))
    return patcher.doc


def plan_group_patch(group: Mapping[str, Any], operations: Sequence[Any]) -> GroupPatchPlan:
    """Turn a Group PATCH into a GroupPatchPlan without reading the group's members.

    `group` is the group's wire JSON; its `members`, if any, are ignored.
    """
    doc = {k: v for k, v in group.items() if k.lower() != "members"}
    patcher, members = _Patcher(doc, GROUP), _MemberDelta()
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


# -- applying operations to a dict --------------------------------------------------------------

def _find_key(container: Mapping[str, Any], name: str) -> str | None:
    """The key of `container` spelling `name` in any case (RFC 7643 section 2.1), or None."""
    if name in container:
        return name
    return next((k for k in container if isinstance(k, str) and k.lower() == name.lower()), None)


def _get(container: Mapping[str, Any], name: str) -> Any:
    key = _find_key(container, name)
    return None if key is None else container[key]


@dataclass
class _Target:
    """Where a path lands: the dict holding the attribute, its key there, and its definition."""

    container: dict[str, Any]
    key: str
    attr: Attribute | None
    urn: str | None  # the extension URN when the attribute lives in an extension object


class _Patcher:
    def __init__(self, resource: Mapping[str, Any], schema: ResourceSchema) -> None:
        self.doc: dict[str, Any] = copy.deepcopy(dict(resource))
        self.schema = schema

    def apply(self, op: Operation) -> None:
        if op.path is not None:
            self.at(op.op, op.path, op.value, op.has_value)
            return
        if op.op == "remove":
            raise NoTarget("remove needs a path (RFC 7644 section 3.5.2.2)")
        if not isinstance(op.value, Mapping):
            raise InvalidValue(f"{op.op} without a path takes an object of attributes as its value")
        for key, value in op.value.items():
            self.pathless(op.op, str(key), value)

    def pathless(self, op: str, key: str, value: Any) -> None:
        """One key of a path-less add/replace: an attribute, a path, or an extension's object."""
        if key.lower() == "schemas":
            return  # the resource's schemas follow from its attributes
        if self.is_extension_object(key, value):
            for sub_key, sub_value in value.items():
                self.pathless(op, f"{key}:{sub_key}", sub_value)
            return
        self.at(op, _parse_path(key), value, True)

    def is_extension_object(self, key: str, value: Any) -> bool:
        if not isinstance(value, Mapping) or not key.lower().startswith("urn:"):
            return False
        if self.schema.urn(key) is not None:
            return True
        prefix = key.rsplit(":", 1)[0]  # `urn:...:enterprise:2.0:User:manager` is an attribute path
        return self.schema.urn(prefix) is None and _find_key(self.doc, prefix) is None

    def target(self, path: PatchPath, create: bool) -> _Target | None:
        urn = None
        container: dict[str, Any] | None = self.doc
        if path.uri is not None:
            urn = self.schema.urn(path.uri) or path.uri
            if urn == self.schema.core_urn:
                urn = None
            else:
                ext_key = _find_key(self.doc, urn)
                if ext_key is None and create:
                    ext_key = urn
                    self.doc[urn] = {}
                    schemas = self.doc.setdefault("schemas", [self.schema.core_urn])
                    if isinstance(schemas, list) and urn not in schemas:
                        schemas.append(urn)
                container = None if ext_key is None else self.doc[ext_key]
                if container is not None and not isinstance(container, dict):
                    raise InvalidPath(f"{urn} is not an extension object")
        if container is None:
            return None
        attr = self.schema.attribute(urn, path.attr.name) if urn is None or self.schema.urn(urn) else None
        key = _find_key(container, path.attr.name) or (attr.name if attr else path.attr.name)
        return _Target(container, key, attr, urn)

    def at(self, op: str, path: PatchPath, value: Any, has_value: bool) -> None:
        if path.uri and path.sub_attr and path.value_filter is None and self.schema.urn(f"{path.uri}:{path.attr.name}"):
            # `urn:...:enterprise:2.0:User.department`: the dot form Entra's older job sent
            path = PatchPath(AttrPath(f"{path.uri}:{path.attr.name}", path.sub_attr))
        target = self.target(path, create=op != "remove")
        if target is None:
            return  # removing from an extension the resource does not have: nothing to do
        if target.attr is not None and target.attr.mutability == "writeOnly":
            return  # a password (Okta's password sync) is never stored; sign-in is SSO
        self.check_mutability(op, target, path, value)
        attr = target.attr
        multi = attr.multi_valued if attr else isinstance(target.container.get(target.key), list)
        if path.value_filter is not None:
            if attr is not None and not multi:
                raise InvalidPath(f"{attr.name} is not multi-valued; it takes no filter")
            self.filtered(op, target, path, value, has_value)
        elif path.sub_attr is not None:
            self.sub_attribute(op, target, path.sub_attr, value)
        elif op == "remove":
            self.remove(target, value if has_value else None)
        elif multi:
            self.set_multi(op, target, value)
        else:
            self.set_single(op, target, value)
        self.drop_empty_extension(target)

    def check_mutability(self, op: str, target: _Target, path: PatchPath, value: Any) -> None:
        """readOnly and required attributes (RFC 7644 section 3.5.2; RFC 7643 section 2.2)."""
        attr = target.attr
        if attr is None:
            return
        sub = attr.sub(path.sub_attr) if path.sub_attr else None
        if attr.mutability == "readOnly" or (sub is not None and sub.mutability == "readOnly"):
            current = target.container.get(target.key)
            if path.sub_attr is None and path.value_filter is None and op != "remove" and value == current:
                return  # Okta repeats the group's own id in a path-less rename
            raise Mutability(f"{attr.name}{'.' + sub.name if sub else ''} is read-only")
        clearing = op == "remove" or value in _EMPTY
        if attr.required and clearing and path.sub_attr is None and path.value_filter is None:
            raise Mutability(f"{attr.name} is required and cannot be removed")

    # plain attributes
    def set_single(self, op: str, target: _Target, value: Any) -> None:
        attr, container, key = target.attr, target.container, target.key
        value = _coerce(attr, value) if attr else value
        if value in _EMPTY:
            container.pop(key, None)  # null and "" clear the attribute (RFC 7643 section 2.5)
            return
        current = container.get(key)
        is_complex = isinstance(value, dict) and (attr is None or attr.type == "complex")
        if is_complex and isinstance(current, dict) and not _changes_value(current, value):
            merged = {**current}  # sub-attributes not given are left unchanged (3.5.2.1, 3.5.2.3)
            for sub_key, sub_value in value.items():
                merged.pop(_find_key(merged, sub_key) or sub_key, None)
                if sub_value not in _EMPTY:
                    merged[sub_key] = sub_value
            value = merged
        if value in _EMPTY:
            container.pop(key, None)
        else:
            container[key] = value

    def set_multi(self, op: str, target: _Target, value: Any) -> None:
        attr, container, key = target.attr, target.container, target.key
        values = _coerce_multi(attr, value) if attr else (value if isinstance(value, list) else [value])
        if op == "replace":
            current: list[Any] = []
        else:
            existing = container.get(key)
            current = list(existing) if isinstance(existing, list) else []
        for item in values:
            if item not in current:  # an add of a value already there changes nothing
                current.append(item)
        _settle_primary(current, [v for v in values if isinstance(v, dict)])
        if current:
            container[key] = current
        else:
            container.pop(key, None)

    def remove(self, target: _Target, value: Any) -> None:
        container, key = target.container, target.key
        current = container.get(key)
        if value is not None and isinstance(current, list):
            # Entra: `remove` with a value lists the values to take out.
            gone = _coerce_multi(target.attr, value)  # one value or a list of them, schema known or not
            kept = [item for item in current if not any(_same_value(item, g, target.attr) for g in gone)]
            if kept:
                container[key] = kept
            else:
                container.pop(key, None)
            return
        container.pop(key, None)

    # sub-attributes without a filter: `name.givenName`, `manager.value`, `emails.value`
    def sub_attribute(self, op: str, target: _Target, sub_name: str, value: Any) -> None:
        attr, container, key = target.attr, target.container, target.key
        sub = attr.sub(sub_name) if attr else None
        sub_key_name = sub.name if sub else sub_name
        value = None if op == "remove" else (_coerce(sub, value) if sub else value)
        current = container.get(key)
        if isinstance(current, list):
            elements = [e for e in current if isinstance(e, dict)]
            if not elements and value not in _EMPTY:
                current.append({sub_key_name: value})
                return
            for element in elements:
                _set_key(element, sub_key_name, value)
            if sub_key_name.lower() == "primary" and value is True:
                _settle_primary(current, elements[-1:])
            return
        if attr is not None and attr.multi_valued:
            if value not in _EMPTY:
                container[key] = [{sub_key_name: value}]
            return
        if value in _EMPTY and sub_key_name.lower() == "value":
            container.pop(key, None)  # a manager without its value is no manager (Entra clears it so)
            return
        element = current if isinstance(current, dict) else {}
        _set_key(element, sub_key_name, value)
        if element:
            container[key] = element
        else:
            container.pop(key, None)

    # value paths: `emails[type eq "work"]`, `emails[type eq "work"].value`
    def filtered(self, op: str, target: _Target, path: PatchPath, value: Any, has_value: bool) -> None:
        attr, container, key = target.attr, target.container, target.key
        assert path.value_filter is not None
        existing = container.get(key)
        current = list(existing) if isinstance(existing, list) else []
        matched = [e for e in current if isinstance(e, dict) and _matches(e, path.value_filter, attr)]
        sub = attr.sub(path.sub_attr) if attr and path.sub_attr else None
        sub_key = (sub.name if sub else path.sub_attr) if path.sub_attr else None
        if op == "remove":
            if sub_key is not None:
                for element in matched:
                    _set_key(element, sub_key, None)
            else:
                current = [e for e in current if not any(e is m for m in matched)]
            self.store(target, current)
            return  # no match: the value is already gone, which is what was asked
        if sub_key is not None:
            new = _coerce(sub, value) if sub else value
        else:
            new = _coerce_element(attr, value) if attr else value
        written: list[Any] = []
        if not matched:
            # RFC 7644 section 3.5.2.3 says noTarget; Entra expects the described value to be added.
            described = _described(path.value_filter)
            if described is None:
                raise NoTarget(f"no value of {key} matches {path.value_filter}")
            if new in _EMPTY:
                return
            element = {**described, **({sub_key: new} if sub_key else new if isinstance(new, dict) else {})}
            written.append(_coerce_element(attr, element) if attr else element)
            current.append(written[-1])
        for index, element in enumerate(current):
            if not any(element is m for m in matched):
                continue
            if sub_key is not None:
                _set_key(element, sub_key, new)
            elif op == "replace":
                current[index] = element = copy.deepcopy(new)
            elif isinstance(new, dict):
                element.update(new)
            written.append(element)
        _settle_primary(current, written)
        self.store(target, current)

    def store(self, target: _Target, values: list[Any]) -> None:
        values = [v for v in values if v not in _EMPTY]
        if values:
            target.container[target.key] = values
        else:
            target.container.pop(target.key, None)

    def drop_empty_extension(self, target: _Target) -> None:
        if target.urn is None or target.container:
            return
        key = _find_key(self.doc, target.urn)
        if key is not None and self.doc[key] == {}:
            del self.doc[key]
            schemas = self.doc.get("schemas")
            if isinstance(schemas, list) and key in schemas:
                schemas.remove(key)


def _set_key(element: dict[str, Any], name: str, value: Any) -> None:
    existing = _find_key(element, name)
    if existing is not None:
        del element[existing]
    if value not in _EMPTY:
        element[existing or name] = value


def _changes_value(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when a complex value names another target (a new manager): then it replaces, not merges."""
    old, given = _get(current, "value"), _get(new, "value")
    return given is not None and given != old


def _same_value(item: Any, other: Any, attr: Attribute | None) -> bool:
    if isinstance(item, dict) and isinstance(other, dict) and _get(other, "value") is not None:
        sub = attr.sub("value") if attr else None
        return _equal(_get(item, "value"), _get(other, "value"), sub.case_exact if sub else True)
    return item == other


def _settle_primary(values: list[Any], written: list[Any]) -> None:
    """Keep `primary: true` on at most one value: the last one this operation wrote wins (RFC 7643 2.4)."""
    chosen = next((v for v in reversed(written) if isinstance(v, dict) and _get(v, "primary") is True), None)
    if chosen is None:
        return
    for value in values:
        if isinstance(value, dict) and value is not chosen and _get(value, "primary") is True:
            _set_key(value, "primary", False)


# -- values -------------------------------------------------------------------------------------

def _coerce(attr: Attribute, value: Any) -> Any:
    """Check and normalise a value for `attr`; None and "" pass through (they clear)."""
    if value is None or (value == "" and attr.type != "boolean"):
        return None
    if attr.multi_valued:
        return _coerce_multi(attr, value)
    if attr.type == "complex":
        return _coerce_element(attr, value)
    if attr.type == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"  # Entra sends "True" and "False"
        if not isinstance(value, bool):
            raise InvalidValue(f"{attr.name} is a boolean; got {value!r}")
        return value
    if attr.type in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValue(f"{attr.name} is a number; got {value!r}")
        return value
    if attr.type == "dateTime":
        try:
            parse_datetime(value)
        except InvalidFilter:
            raise InvalidValue(f"{attr.name} is a dateTime; got {value!r}") from None
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidValue(f"{attr.name} is a string; got {value!r}")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidValue(f"{attr.name} cannot contain the NUL character")  # PostgreSQL text cannot
    return str(value)  # a number sent for a string attribute (employeeNumber) is kept as its text


def _coerce_element(attr: Attribute, value: Any) -> Any:
    """A complex value: a bare string stands for {"value": ...} (Entra's manager); subs checked."""
    if value in _EMPTY:
        return None
    if not isinstance(value, Mapping):
        if attr.sub("value") is None:
            raise InvalidValue(f"{attr.name} is complex; give an object of its sub-attributes")
        value = {"value": value}
    if attr.sub("value") is not None and _find_key(value, "value") is not None and _get(value, "value") in _EMPTY:
        return None  # {"value": ""}: a reference to nothing (Entra's way to remove the manager)
    element: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub = attr.sub(str(key))
        if sub is not None and sub.mutability == "readOnly":
            continue  # computed by the service (manager.displayName): ignored, not an error
        element[sub.name if sub else key] = _coerce(sub, sub_value) if sub else sub_value
    return element


def _coerce_multi(attr: Attribute | None, value: Any) -> list[Any]:
    if value in _EMPTY:
        return []
    items = value if isinstance(value, list) else [value]
    if attr is None or attr.type != "complex":
        return list(items)
    coerced = [_coerce_element(attr, item) for item in items]
    return [item for item in coerced if item not in _EMPTY]


def _equal(left: Any, right: Any, case_exact: bool) -> bool:
    if isinstance(left, str) and isinstance(right, str) and not case_exact:
        return left.lower() == right.lower()
    if isinstance(left, bool) or isinstance(right, bool):
        return _as_bool(left) is _as_bool(right)
    return bool(left == right)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _matches(element: Mapping[str, Any], node: Filter, attr: Attribute | None) -> bool:
    """Evaluate a value filter on one value of a multi-valued attribute."""
    if isinstance(node, Logical):
        left = _matches(element, node.left, attr)
        return (left and _matches(element, node.right, attr)) if node.op == "and" else \
            (left or _matches(element, node.right, attr))
    if isinstance(node, Not):
        return not _matches(element, node.operand, attr)
    if not isinstance(node, Compare) or node.path.uri or node.path.sub_attr:
        raise InvalidPath(f"{node} is not a filter on sub-attributes")
    sub = attr.sub(node.path.name) if attr else None
    case_exact = sub.case_exact if sub else False
    actual, expected = _get(element, node.path.name), node.value
    if node.op == "pr":
        return actual not in _EMPTY
    if node.op in ("eq", "ne"):
        return _equal(actual, expected, case_exact) is (node.op == "eq")
    if not isinstance(actual, str) or not isinstance(expected, str):
        return _ordered(actual, expected, node.op)
    if not case_exact:
        actual, expected = actual.lower(), expected.lower()
    tests = {"co": expected in actual, "sw": actual.startswith(expected), "ew": actual.endswith(expected)}
    return tests[node.op] if node.op in tests else _ordered(actual, expected, node.op)


def _ordered(actual: Any, expected: Any, op: str) -> bool:
    comparable = (isinstance(actual, str) and isinstance(expected, str)) or (
        isinstance(actual, (int, float)) and isinstance(expected, (int, float))
        and not isinstance(actual, bool) and not isinstance(expected, bool))
    if not comparable or op not in ("gt", "ge", "lt", "le"):
        return False
    return {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected, "le": actual <= expected}[op]


def _described(node: Filter) -> dict[str, Any] | None:
    """The value a filter of `eq`s joined by `and` describes (`type eq "work"` -> {"type": "work"})."""
    if isinstance(node, Compare) and node.op == "eq" and node.value is not None and not node.path.sub_attr:
        return {node.path.name: node.value}
    if isinstance(node, Logical) and node.op == "and":
        left, right = _described(node.left), _described(node.right)
        if left is None or right is None or set(map(str.lower, left)) & set(map(str.lower, right)):
            return None
        return {**left, **right}
    return None
