"""`attributes` and `excludedAttributes` (RFC 7644 sections 3.4.2.5, 3.9 and 3.10), down to sub-attributes.

A name is an attribute path: `userName`, `name.familyName`, `emails.value` (each value of a
multi-valued attribute), `members.display`, with or without its schema URN
(`urn:ietf:params:scim:schemas:core:2.0:User:name.familyName`,
`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`). `id` and `schemas` are
always returned. A complex attribute left with no sub-attribute is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER

_CORE = (CORE_USER.lower(), CORE_GROUP.lower())
_ALWAYS = ("id", "schemas")
Path = tuple[str, ...]


def _path(name: str, urns: Iterable[str]) -> Path:
    """The lower-case steps of an attribute path; an extension's URN is the first step."""
    lower = name.strip().lower()
    for urn in sorted({u.lower() for u in urns} | {*_CORE, ENTERPRISE_USER.lower()}, key=len, reverse=True):
        if lower == urn:
            return () if urn in _CORE else (urn,)
        if lower.startswith(urn + ":"):
            rest = tuple(lower[len(urn) + 1:].split("."))
            return rest if urn in _CORE else (urn, *rest)
    return tuple(lower.split("."))


def _paths(names: list[str], resource: dict[str, Any] | None = None) -> list[Path]:
    urns = [key for key in resource or {} if key.lower().startswith("urn:")]
    return [path for path in (_path(name, urns) for name in names) if path]


def wants(attribute: str, attributes: list[str], excluded: list[str]) -> bool:
    """Tell whether the response shows any of top-level `attribute` (RFC 7644 section 3.4.2.5)."""
    key = attribute.lower()
    if attributes:
        return any(path[0] == key for path in _paths(attributes))
    return (key,) not in _paths(excluded)


def whole(attribute: str, attributes: list[str], excluded: list[str]) -> bool:
    """Tell whether top-level `attribute`, if shown, is shown with all its sub-attributes."""
    key = attribute.lower()
    return not any(len(path) > 1 and path[0] == key for path in _paths(attributes) + _paths(excluded))


def project(resource: dict[str, Any], attributes: list[str], excluded: list[str]) -> dict[str, Any]:
    """Return `resource` with only `attributes`, or without `excluded`; `id` and `schemas` always stay."""
    if attributes:
        kept = _keep(resource, _paths(attributes, resource))
    elif excluded:
        kept = _drop(resource, _paths(excluded, resource))
    else:
        return resource
    return {key: value for key, value in resource.items() if key in _ALWAYS} | kept


def _under(key: str, paths: list[Path]) -> list[Path]:
    return [path[1:] for path in paths if path[0] == key.lower()]


def _keep(node: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        subs = _under(key, paths)
        if not subs:
            continue
        if () in subs:
            out[key] = value
        elif (picked := _each(value, _keep, subs)) not in (None, {}, []):
            out[key] = picked
    return out


def _drop(node: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        subs = _under(key, paths)
        if not subs:
            out[key] = value
        elif () not in subs and (left := _each(value, _drop, subs)) not in (None, {}, []):
            out[key] = left
    return out


def _each(value: Any, pick: Callable[[dict[str, Any], list[Path]], dict[str, Any]], paths: list[Path]) -> Any:
    """Apply `pick` to a complex value, or to each complex value of a multi-valued one; a simple
    value has no sub-attributes to pick (None)."""
    if isinstance(value, dict):
        return pick(value, paths)
    if isinstance(value, list):
        return [picked for item in value if isinstance(item, dict) and (picked := pick(item, paths))]
    return None
