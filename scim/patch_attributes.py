"""One PATCH operation's edit of one attribute, where its path landed (a `Target`).

A plain attribute (RFC 7644 section 3.5.2.1 and 3.5.2.3), a sub-attribute, or the values a value
path selects; `remove` per section 3.5.2.2. The rules for readOnly and required attributes are
RFC 7643 section 2.2.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from scim.errors import InvalidPath, Mutability, NoTarget
from scim.patch_values import (
    EMPTY,
    changes_value,
    coerce,
    coerce_element,
    coerce_multi,
    described_value,
    find_key,
    matches,
    same_value,
    set_key,
    settle_primary,
)
from scim.schema import Attribute
from scim.syntax import PatchPath


@dataclass
class Target:
    """Where a path lands: the dict holding the attribute, its key there, and its definition."""

    container: dict[str, Any]
    key: str
    attr: Attribute | None
    urn: str | None  # the extension URN when the attribute lives in an extension object


def check_mutability(op: str, target: Target, path: PatchPath, value: Any) -> None:
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
    clearing = op == "remove" or value in EMPTY
    if attr.required and clearing and path.sub_attr is None and path.value_filter is None:
        raise Mutability(f"{attr.name} is required and cannot be removed")


def edit(op: str, target: Target, path: PatchPath, value: Any, has_value: bool) -> None:
    """Apply one operation to the attribute at `target` (its mutability checked first)."""
    check_mutability(op, target, path, value)
    attr = target.attr
    multi = attr.multi_valued if attr else isinstance(target.container.get(target.key), list)
    if path.value_filter is not None:
        if attr is not None and not multi:
            raise InvalidPath(f"{attr.name} is not multi-valued; it takes no filter")
        filtered(op, target, path, value)
    elif path.sub_attr is not None:
        sub_attribute(op, target, path.sub_attr, value)
    elif op == "remove":
        remove(target, value if has_value else None)
    elif multi:
        set_multi(op, target, value)
    else:
        set_single(op, target, value)



def set_single(op: str, target: Target, value: Any) -> None:
    """Set a singular attribute; a complex value merges into the current one unless it names another."""
    attr, container, key = target.attr, target.container, target.key
    value = coerce(attr, value) if attr else value
    if value in EMPTY:
        container.pop(key, None)  # null and "" clear the attribute (RFC 7643 section 2.5)
        return
    current = container.get(key)
    is_complex = isinstance(value, dict) and (attr is None or attr.type == "complex")
    if is_complex and isinstance(current, dict) and not changes_value(current, value):
        merged = {**current}  # sub-attributes not given are left unchanged (3.5.2.1, 3.5.2.3)
        for sub_key, sub_value in value.items():
            merged.pop(find_key(merged, sub_key) or sub_key, None)
            if sub_value not in EMPTY:
                merged[sub_key] = sub_value
        value = merged
    if value in EMPTY:
        container.pop(key, None)
    else:
        container[key] = value


def set_multi(op: str, target: Target, value: Any) -> None:
    """Add values to a multi-valued attribute, or replace them all.

    A value the attribute already holds (the same `value`, compared as `same_value` compares) is
    merged into the one there, not added again (RFC 7644 section 3.5.2.1): IdPs re-send values,
    with another `primary` or `display`. What this wrote, stored element or new, settles `primary`.
    """
    attr, container, key = target.attr, target.container, target.key
    values = coerce_multi(attr, value) if attr else (value if isinstance(value, list) else [value])
    if op == "replace":
        current: list[Any] = []
    else:
        existing = container.get(key)
        current = list(existing) if isinstance(existing, list) else []
    written = [_add_one(current, item, attr) for item in values]
    settle_primary(current, [v for v in written if isinstance(v, dict)])
    if current:
        container[key] = current
    else:
        container.pop(key, None)


def _add_one(current: list[Any], item: Any, attr: Attribute | None) -> Any:
    """Add `item` to `current`, or merge it into the value there that it names; return what holds it."""
    held = next((c for c in current if same_value(c, item, attr)), None)
    if held is None:
        current.append(item)
        return item
    if isinstance(held, dict) and isinstance(item, dict):
        for sub_key, sub_value in item.items():
            set_key(held, sub_key, sub_value)
    return held


def remove(target: Target, value: Any) -> None:
    """Remove an attribute, or (given a value) those of its values (Entra's `remove` with a value)."""
    container, key = target.container, target.key
    current = container.get(key)
    if value is not None and isinstance(current, list):
        # Entra: `remove` with a value lists the values to take out.
        gone = coerce_multi(target.attr, value)  # one value or a list of them, schema known or not
        kept = [item for item in current if not any(same_value(item, g, target.attr) for g in gone)]
        if kept:
            container[key] = kept
        else:
            container.pop(key, None)
        return
    container.pop(key, None)


def sub_attribute(op: str, target: Target, sub_name: str, value: Any) -> None:
    """A sub-attribute without a filter: `name.givenName`, `manager.value`, `emails.value`."""
    attr, container, key = target.attr, target.container, target.key
    sub = attr.sub(sub_name) if attr else None
    sub_key_name = sub.name if sub else sub_name
    value = None if op == "remove" else (coerce(sub, value) if sub else value)
    current = container.get(key)
    if isinstance(current, list):
        elements = [e for e in current if isinstance(e, dict)]
        if not elements and value not in EMPTY:
            current.append({sub_key_name: value})
            return
        for element in elements:
            set_key(element, sub_key_name, value)
        if sub_key_name.lower() == "primary" and value is True:
            settle_primary(current, elements[-1:])
        return
    if attr is not None and attr.multi_valued:
        if value not in EMPTY:
            container[key] = [{sub_key_name: value}]
        return
    if value in EMPTY and sub_key_name.lower() == "value":
        container.pop(key, None)  # a manager without its value is no manager (Entra clears it so)
        return
    element = current if isinstance(current, dict) else {}
    set_key(element, sub_key_name, value)
    if element:
        container[key] = element
    else:
        container.pop(key, None)


def filtered(op: str, target: Target, path: PatchPath, value: Any) -> None:
    """A value path: `emails[type eq "work"]`, `emails[type eq "work"].value` (RFC 7644 3.5.2)."""
    attr, container, key = target.attr, target.container, target.key
    assert path.value_filter is not None
    existing = container.get(key)
    current = list(existing) if isinstance(existing, list) else []
    matched = [e for e in current if isinstance(e, dict) and matches(e, path.value_filter, attr)]
    sub = attr.sub(path.sub_attr) if attr and path.sub_attr else None
    sub_key = (sub.name if sub else path.sub_attr) if path.sub_attr else None
    if op == "remove":
        if sub_key is not None:
            for element in matched:
                set_key(element, sub_key, None)
        else:
            current = [e for e in current if not any(e is m for m in matched)]
        store(target, current)
        return  # no match: the value is already gone, which is what was asked
    if sub_key is not None:
        new = coerce(sub, value) if sub else value
    else:
        new = coerce_element(attr, value) if attr else value
    written: list[Any] = []
    if not matched:
        # RFC 7644 section 3.5.2.3 says noTarget; Entra expects the described value to be added.
        described = described_value(path.value_filter)
        if described is None:
            raise NoTarget(f"no value of {key} matches {path.value_filter}")
        if new in EMPTY:
            return
        element = {**described, **({sub_key: new} if sub_key else new if isinstance(new, dict) else {})}
        written.append(coerce_element(attr, element) if attr else element)
        current.append(written[-1])
    for index, element in enumerate(current):
        if not any(element is m for m in matched):
            continue
        if sub_key is not None:
            set_key(element, sub_key, new)
        elif op == "replace":
            current[index] = element = copy.deepcopy(new)
        elif isinstance(new, dict):
            element.update(new)
        written.append(element)
    settle_primary(current, written)
    store(target, current)


def store(target: Target, values: list[Any]) -> None:
    """Write a multi-valued attribute's values back, or remove it when none is left."""
    values = [v for v in values if v not in EMPTY]
    if values:
        target.container[target.key] = values
    else:
        target.container.pop(target.key, None)
