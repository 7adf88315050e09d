"""PATCH on a resource held whole as its wire JSON: a User, or a Group's own attributes.

`apply_patch` returns the patched copy; `patch_user` adds what a User's PATCH may also do, name
its enterprise extension as a whole. Paths are resolved here (core or extension attributes, the
extension object created when a value arrives for it); each attribute is edited by
scim.patch_attributes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from scim.errors import InvalidPath, InvalidValue, NoTarget
from scim.patch import Operation, parse_operation, parse_patch_path
from scim.patch_attributes import Target, edit
from scim.patch_values import find_key
from scim.schema import USER, ResourceSchema
from scim.syntax import AttrPath, PatchPath


def apply_patch(resource: Mapping[str, Any], operations: Sequence[Any],
                schema: ResourceSchema = USER) -> dict[str, Any]:
    """Return a copy of `resource` with the operations applied in order (RFC 7644 3.5.2.1-3).

    Raises NoTarget, Mutability, InvalidValue, InvalidPath, InvalidSyntax or InvalidFilter.
    """
    patcher = Patcher(resource, schema)
    for raw in operations:
        patcher.apply(parse_operation(raw))
    return patcher.doc


def patch_user(doc: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """Apply a User PATCH, with paths naming a whole extension object (RFC 7644 section 3.5.2).

    `add`/`replace` on the extension's URN set the sub-attributes given (the others stay, section
    3.5.2.1 and 3.5.2.3); `remove` takes the whole extension away.
    """
    for op in operations:
        urn = _whole_extension(op)
        if urn is None:
            doc = apply_patch(doc, [op])
        elif op.op == "remove":
            doc = {k: v for k, v in doc.items() if k.lower() != urn.lower()}
            doc["schemas"] = [x for x in doc.get("schemas") or [] if str(x).lower() != urn.lower()]
        elif isinstance(op.value, dict):
            value = {k: v for k, v in op.value.items() if k.lower() != "schemas"}
            doc = apply_patch(doc, [Operation(op.op, None, {urn: value}, True)])
        elif op.value is None:
            raise InvalidValue(f"{op.op} on {urn} needs an object of its attributes as its value")
        else:
            raise InvalidValue(f"{urn} is an extension object; got {op.value!r}")
    return doc


def _whole_extension(op: Operation) -> str | None:
    """The extension URN an operation's path names as a whole (`urn:...:enterprise:2.0:User`), or None."""
    path = op.path
    if path is None or path.uri is None or path.sub_attr is not None or path.value_filter is not None:
        return None
    urn = USER.urn(f"{path.uri}:{path.attr.name}")
    return urn if urn in USER.extensions else None


class Patcher:
    """Applies operations, in order, to a copy of a resource's wire JSON (`doc`)."""

    def __init__(self, resource: Mapping[str, Any], schema: ResourceSchema) -> None:
        self.doc: dict[str, Any] = copy.deepcopy(dict(resource))
        self.schema = schema

    def apply(self, op: Operation) -> None:
        """Apply one operation: at its path, or each key of a path-less one's value."""
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
        self.at(op, parse_patch_path(key), value, True)

    def is_extension_object(self, key: str, value: Any) -> bool:
        """True when a path-less key names an extension and its value holds that extension's attributes."""
        if not isinstance(value, Mapping) or not key.lower().startswith("urn:"):
            return False
        if self.schema.urn(key) is not None:
            return True
        prefix = key.rsplit(":", 1)[0]  # `urn:...:enterprise:2.0:User:manager` is an attribute path
        return self.schema.urn(prefix) is None and find_key(self.doc, prefix) is None

    def target(self, path: PatchPath, create: bool) -> Target | None:
        """Where `path` lands; its extension object is created when `create` and missing, else None."""
        urn = None
        container: dict[str, Any] | None = self.doc
        if path.uri is not None:
            urn = self.schema.urn(path.uri) or path.uri
            if urn == self.schema.core_urn:
                urn = None
            else:
                ext_key = find_key(self.doc, urn)
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
        key = find_key(container, path.attr.name) or (attr.name if attr else path.attr.name)
        return Target(container, key, attr, urn)

    def at(self, op: str, path: PatchPath, value: Any, has_value: bool) -> None:
        """Apply one operation at `path`."""
        if path.uri and path.sub_attr and path.value_filter is None and self.schema.urn(f"{path.uri}:{path.attr.name}"):
            # `urn:...:enterprise:2.0:User.department`: the dot form Entra's older job sent
            path = PatchPath(AttrPath(f"{path.uri}:{path.attr.name}", path.sub_attr))
        target = self.target(path, create=op != "remove")
        if target is None:
            return  # removing from an extension the resource does not have: nothing to do
        if target.attr is not None and target.attr.mutability == "writeOnly":
            return  # a password (Okta's password sync) is never stored; sign-in is SSO
        edit(op, target, path, value, has_value)
        self.drop_empty_extension(target)

    def drop_empty_extension(self, target: Target) -> None:
        """Remove an extension object left empty, and its URN from `schemas`."""
        if target.urn is None or target.container:
            return
        key = find_key(self.doc, target.urn)
        if key is not None and self.doc[key] == {}:
            del self.doc[key]
            schemas = self.doc.get("schemas")
            if isinstance(schemas, list) and key in schemas:
                schemas.remove(key)
