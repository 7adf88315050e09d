"""Values in a PATCH: coerced to the attribute's schema type, compared, matched by value filters.

Keys are found in any case (RFC 7643 section 2.1); null, "", [] and {} clear (section 2.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.names import name_key
from scim.errors import InvalidFilter, InvalidPath, InvalidValue
from scim.schema import Attribute
from scim.syntax import Compare, Filter, Logical, Not, parse_datetime

EMPTY: tuple[Any, ...] = (None, "", [], {})


def find_key(container: Mapping[str, Any], name: str) -> str | None:
    """The key of `container` spelling `name` in any case (RFC 7643 section 2.1), or None."""
    if name in container:
        return name
    return next((k for k in container if isinstance(k, str) and k.lower() == name.lower()), None)


def value_of(container: Mapping[str, Any], name: str) -> Any:
    """The value of `container` under `name` spelt in any case, or None."""
    key = find_key(container, name)
    return None if key is None else container[key]


def set_key(element: dict[str, Any], name: str, value: Any) -> None:
    """Set `name` in `element`, keeping the key's spelling; an empty value removes it."""
    existing = find_key(element, name)
    if value not in EMPTY:
        element[existing or name] = value  # in its place: a re-sent value leaves the stored JSON as it was
    elif existing is not None:
        del element[existing]


def changes_value(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when a complex value names another target (a new manager): then it replaces, not merges."""
    old, given = value_of(current, "value"), value_of(new, "value")
    return given is not None and given != old


def same_value(item: Any, other: Any, attr: Attribute | None) -> bool:
    """True when `item` is the value `other` names (by its `value` sub-attribute when it has one)."""
    if isinstance(item, dict) and isinstance(other, dict) and value_of(other, "value") is not None:
        sub = attr.sub("value") if attr else None
        return _equal(value_of(item, "value"), value_of(other, "value"), sub.case_exact if sub else True)
    return bool(item == other)


def settle_primary(values: list[Any], written: list[Any]) -> None:
    """Keep `primary: true` on at most one value: the last one this operation wrote wins (RFC 7643 2.4)."""
    chosen = next((v for v in reversed(written) if isinstance(v, dict) and value_of(v, "primary") is True), None)
    if chosen is None:
        return
    for value in values:
        if isinstance(value, dict) and value is not chosen and value_of(value, "primary") is True:
            set_key(value, "primary", False)


def coerce(attr: Attribute, value: Any) -> Any:
    """Check and normalise a value for `attr`; None and "" pass through (they clear)."""
    if value is None or (value == "" and attr.type != "boolean"):
        return None
    if attr.multi_valued:
        return coerce_multi(attr, value)
    if attr.type == "complex":
        return coerce_element(attr, value)
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
    return str(value)  # a number sent for a string attribute (employeeNumber) is kept as its text


def coerce_element(attr: Attribute, value: Any) -> Any:
    """A complex value: a bare string stands for {"value": ...} (Entra's manager); subs checked."""
    if value in EMPTY:
        return None
    if not isinstance(value, Mapping):
        if attr.sub("value") is None:
            raise InvalidValue(f"{attr.name} is complex; give an object of its sub-attributes")
        value = {"value": value}
    if attr.sub("value") is not None and find_key(value, "value") is not None and value_of(value, "value") in EMPTY:
        return None  # {"value": ""}: a reference to nothing (Entra's way to remove the manager)
    element: dict[str, Any] = {}
    for key, sub_value in value.items():
        sub = attr.sub(str(key))
        if sub is not None and sub.mutability == "readOnly":
            continue  # computed by the service (manager.displayName): ignored, not an error
        element[sub.name if sub else key] = coerce(sub, sub_value) if sub else sub_value
    return element


def coerce_multi(attr: Attribute | None, value: Any) -> list[Any]:
    if value in EMPTY:
        return []
    items = value if isinstance(value, list) else [value]
    if attr is None or attr.type != "complex":
        return list(items)
    coerced = [coerce_element(attr, item) for item in items]
    return [item for item in coerced if item not in EMPTY]


def _equal(left: Any, right: Any, case_exact: bool) -> bool:
    """caseExact=false strings compare by their name key (NFC, then casefold), as the service
    compares userNames and email addresses (identity.names.name_key): `Ä` is `ä`, as `A` is `a`."""
    if isinstance(left, str) and isinstance(right, str) and not case_exact:
        return name_key(left) == name_key(right)
    if isinstance(left, bool) or isinstance(right, bool):
        return _as_bool(left) is _as_bool(right)
    return bool(left == right)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def matches(element: Mapping[str, Any], node: Filter, attr: Attribute | None) -> bool:
    """Evaluate a value filter on one value of a multi-valued attribute."""
    if isinstance(node, Logical):
        left = matches(element, node.left, attr)
        return (left and matches(element, node.right, attr)) if node.op == "and" else \
            (left or matches(element, node.right, attr))
    if isinstance(node, Not):
        return not matches(element, node.operand, attr)
    if not isinstance(node, Compare) or node.path.uri or node.path.sub_attr:
        raise InvalidPath(f"{node} is not a filter on sub-attributes")
    sub = attr.sub(node.path.name) if attr else None
    case_exact = sub.case_exact if sub else False
    actual, expected = value_of(element, node.path.name), node.value
    if node.op == "pr":
        return actual not in EMPTY
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
    return bool({"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected,
                 "le": actual <= expected}[op])


def described_value(node: Filter) -> dict[str, Any] | None:
    """The value a filter of `eq`s joined by `and` describes (`type eq "work"` -> {"type": "work"})."""
    if isinstance(node, Compare) and node.op == "eq" and node.value is not None and not node.path.sub_attr:
        return {node.path.name: node.value}
    if isinstance(node, Logical) and node.op == "and":
        left, right = described_value(node.left), described_value(node.right)
        if left is None or right is None or set(map(str.lower, left)) & set(map(str.lower, right)):
            return None
        return {**left, **right}
    return None
