"""PATCH (RFC 7644 section 3.5.2): the request's operations, validated, and their paths parsed.

What they patch is elsewhere: scim.patch_resource applies them to a resource held whole as its
wire JSON (a User, a Group's own attributes), scim.patch_members folds a Group's member
operations into deltas; both edit values through scim.patch_attributes and scim.patch_values.

Read strictly where it matters (ids, meta, required attributes, types) and tolerantly where Okta
and Entra ID are known to deviate: capitalised ops, "True"/"False" strings for booleans, path-less
add/replace whose value keys are paths (`name.givenName`, URN-prefixed, even with a filter), a
`replace` on `emails[type eq "work"].value` when there is no work email (it adds one), the manager
sent as a bare id, and cleared with "" or null, `remove` with a value listing members, and a
`remove` of a member already gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from identity import jsontext
from scim.errors import InvalidFilter, InvalidPath, InvalidSyntax, InvalidValue
from scim.syntax import PatchPath, parse_path

PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OPS = ("add", "remove", "replace")


@dataclass(frozen=True)
class Operation:
    """One PATCH operation, validated: `op` lowercased, `path` parsed (None when path-less)."""

    op: str
    path: PatchPath | None
    value: Any = None
    has_value: bool = False


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
    parsed = parse_patch_path(path) if path not in (None, "") else None
    if jsontext.unstorable(fields.get("value")):  # any attribute's, members' ids included: no database stores them
        raise InvalidValue("a value must not contain NUL characters or unpaired surrogates")
    return Operation(op.lower(), parsed, fields.get("value"), "value" in fields)


def parse_patch_path(text: str) -> PatchPath:
    """Parse a PATCH path (RFC 7644 section 3.5.2, `PATH` of figure 1); raise InvalidPath."""
    try:
        return parse_path(text)
    except InvalidFilter as exc:
        raise InvalidPath(f"invalid path {text!r}: {exc.detail}") from None
