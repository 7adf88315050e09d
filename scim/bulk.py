"""/Bulk (RFC 7644 section 3.7): operations run in order, each in its own transaction.

Each operation calls the very handler its route calls (scim.user_views, scim.group_views);
`bulkId:` references name resources created earlier in the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, g

from identity.db import CommitUnknown, transient_kind
from identity.errors import DomainError
from identity.jsontext import UNSTORABLE
from identity.web import transient
from scim import context, discovery, errors, group_views, user_views
from scim.context import Result
from scim.streaming import respond
from scim.web import bp, translate, unknown_detail

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


def _resolve_bulk_ids(value: Any, created: dict[str, str]) -> Any:
    """Replace "bulkId:<id>" references with the ids of resources created earlier in the request."""
    if isinstance(value, str) and value.startswith("bulkId:"):
        ref = value[len("bulkId:"):]
        if ref not in created:
            raise errors.InvalidValue(f"unknown or not yet created bulkId {ref!r}")
        return created[ref]
    if isinstance(value, list):
        return [_resolve_bulk_ids(item, created) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_bulk_ids(item, created) for key, item in value.items()}
    return value


def _dispatch(method: str, path: str, data: Any) -> Result:
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("Users", "Groups") or len(parts) > 2:
        raise errors.InvalidValue(f"unsupported bulk path {path!r}")
    if UNSTORABLE.search(path):  # no resource has such an id, and no database takes it in a query
        raise errors.InvalidValue("a bulk path must not contain NUL characters or unpaired surrogates")
    users = parts[0] == "Users"
    resource_id = parts[1] if len(parts) == 2 else ""
    handlers: dict[tuple[str, bool], Callable[[], Result]] = {
        ("POST", False): lambda: (user_views.create_user if users else group_views.create_group)(data),
        ("PUT", True): lambda: (user_views.replace_user if users else group_views.replace_group)(resource_id, data),
        ("PATCH", True): lambda: user_views.patch_user(resource_id, data) if users
        else group_views.patch_group(resource_id, data, {}),
        ("DELETE", True): lambda: (user_views.delete_user if users else group_views.delete_group)(resource_id),
    }
    handler = handlers.get((method, len(parts) == 2))
    if handler is None:
        raise errors.InvalidValue(f"{method} {path} is not a bulk operation")
    return handler()


def _fail_on_errors(body: dict[str, Any]) -> int | None:
    fail_on = body.get("failonerrors")
    if fail_on is not None and (not isinstance(fail_on, int) or isinstance(fail_on, bool) or fail_on < 1):
        raise errors.InvalidValue("failOnErrors must be a positive integer")
    return fail_on


def _resolve_path(path: str, created: dict[str, str]) -> str:
    """The path with a `bulkId:<id>` segment replaced by the id made earlier in the request (RFC 7644 section 3.7.2)."""
    return "/".join(_resolve_bulk_ids(part, created) for part in path.split("/"))


def _run_one(operation: Any, created: dict[str, str]) -> dict[str, Any]:
    """Run one bulk operation and return its entry of the response; a failure is in the entry."""
    if not isinstance(operation, dict):
        raise errors.InvalidSyntax("each bulk operation is a JSON object")
    fields = {str(key).lower(): value for key, value in operation.items()}  # names are case-insensitive
    method, path = str(fields.get("method", "")).upper(), str(fields.get("path", ""))
    bulk_id = fields.get("bulkid")
    outcome: dict[str, Any] = {"method": method, **({"bulkId": bulk_id} if bulk_id else {})}
    # Each operation's `version` is its precondition, as If-Match is a request's (RFC 7644 section 3.7).
    g.bulk_if_match = fields.get("version") if isinstance(fields.get("version"), str) else None
    try:
        if method == "POST" and not bulk_id:
            raise errors.InvalidValue("a POST in a bulk request needs a bulkId")
        path = _resolve_path(path, created)
        if method != "POST" and path.strip("/"):  # REQUIRED but for a POST that failed (RFC 7644 section 3.7)
            outcome["location"] = f"{context.base_url()}/{path.strip('/')}"
        status, resource, headers = _dispatch(method, path, _resolve_bulk_ids(fields.get("data"), created))
        if bulk_id and resource is not None and method == "POST":
            created[str(bulk_id)] = resource["id"]
        outcome["status"] = str(status)
        outcome.update({name: headers[header] for name, header in (("location", "Location"), ("version", "ETag"))
                        if header in headers})
    except (errors.ScimError, DomainError) as error:
        scim_error = error if isinstance(error, errors.ScimError) else translate(error)
        outcome.update({"status": str(scim_error.status), "response": scim_error.to_json()})
    except CommitUnknown as error:  # this operation's COMMIT lost: it may have been made, never "send it again"
        transient.unknown(error, g.get("request_id"))
        outcome.update({"status": "500", "response": errors.error_body(500, None, unknown_detail(g.get("request_id")))})
    except Exception as error:  # a transient conflict is this operation's 503: those before it committed
        kind = transient_kind(error)
        if kind is None:
            raise
        transient.answered(kind, g.get("request_id"))
        outcome.update({"status": "503", "response": errors.error_body(503, None, transient.DETAIL)})
    finally:
        g.pop("bulk_if_match", None)
    return outcome


def bulk(body: Any) -> Result:
    """Run each operation in its own transaction, in order, until failOnErrors errors are reached."""
    fields = {str(key).lower(): value for key, value in body.items()} if isinstance(body, dict) else {}
    if not isinstance(fields.get("operations"), list):
        raise errors.InvalidSyntax("a bulk request has an \"Operations\" array")
    operations = fields["operations"]
    if len(operations) > discovery.MAX_BULK_OPERATIONS:
        raise errors.PayloadTooLarge(discovery.bulk_limits())
    fail_on = _fail_on_errors(fields)
    created: dict[str, str] = {}
    results, failures = [], 0
    for operation in operations:
        outcome = _run_one(operation, created)
        results.append(outcome)
        failures += "response" in outcome
        if fail_on is not None and failures >= fail_on:
            break
    return 200, {"schemas": [BULK_RESPONSE], "Operations": results}, {}


@bp.post("/Bulk")
def bulk_route() -> Response:
    return respond(bulk(context.body()))
