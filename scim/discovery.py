"""ServiceProviderConfig, ResourceTypes and Schemas (RFC 7644 section 4, RFC 7643 sections 5-7).

They describe exactly what this service does; the values come from the same constants the
endpoints enforce.
"""

from __future__ import annotations

import json
from typing import Any

from identity.config import MAX_BODY_BYTES
from scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER, GROUP, USER, Attribute

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_RESULTS = 1000          # largest `count` honoured, and the most filter results in one page
DEFAULT_COUNT = 100
MAX_BULK_OPERATIONS = 100
MAX_PAYLOAD_BYTES = MAX_BODY_BYTES  # the app's MAX_CONTENT_LENGTH: a larger body is refused before it is read

SCHEMA_NAMES = {CORE_USER: ("User", "User Account"), ENTERPRISE_USER: ("EnterpriseUser", "Enterprise User"),
                CORE_GROUP: ("Group", "Group")}


def bulk_limits() -> str:
    """The detail of a 413 for a bulk request: the limits, as RFC 7644 section 3.7.4's example gives them."""
    return json.dumps({"maxOperations": MAX_BULK_OPERATIONS, "maxPayloadSize": MAX_PAYLOAD_BYTES})


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": f"{base.rsplit('/scim/v2', 1)[0]}/openapi.json",
        "patch": {"supported": True},
        "bulk": {"supported": True, "maxOperations": MAX_BULK_OPERATIONS, "maxPayloadSize": MAX_PAYLOAD_BYTES},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
             "description": "A SCIM bearer token, or an access token from the client-credentials token endpoint"},
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


def resource_types(base: str) -> list[dict[str, Any]]:
    return [
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
         "endpoint": "/Users", "description": "User Account", "schema": CORE_USER,
         "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False}],
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"}},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "Group", "name": "Group",
         "endpoint": "/Groups", "description": "Group", "schema": CORE_GROUP, "schemaExtensions": [],
         "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/Group"}},
    ]


# What the service keeps unique (RFC 7643 section 7, `uniqueness: server`): a resource's id, a
# user's userName, a group's displayName; never a user's displayName or a sub-attribute's.
UNIQUE = {USER.core_urn: frozenset({"id", "userName"}), GROUP.core_urn: frozenset({"id", "displayName"})}


def _attribute(attr: Attribute, unique: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": attr.name, "type": attr.type, "multiValued": attr.multi_valued, "required": attr.required,
        "caseExact": attr.case_exact, "mutability": attr.mutability,
        "returned": "never" if attr.mutability == "writeOnly" else ("always" if attr.name == "id" else "default"),
        "uniqueness": "server" if attr.name in unique else "none",
        "description": attr.name,
    }
    if attr.type == "reference":
        out["referenceTypes"] = list(attr.reference_types) or ["external"]
    if attr.canonical_values:
        out["canonicalValues"] = list(attr.canonical_values)
    if attr.sub_attributes:
        out["subAttributes"] = [_attribute(sub) for sub in attr.sub_attributes.values()]
    return out


def schemas(base: str) -> list[dict[str, Any]]:
    out = []
    for resource in (USER, GROUP):
        for urn, attrs in resource.schemas.items():
            name, description = SCHEMA_NAMES[urn]
            out.append({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": urn, "name": name,
                "description": description,
                "attributes": [_attribute(a, UNIQUE.get(urn, frozenset())) for a in attrs.values() if a.name != "meta"],
                "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"},
            })
    return out


def list_response(resources: list[dict[str, Any]], total: int | None = None, start: int = 1) -> dict[str, Any]:
    return {"schemas": [LIST_SCHEMA], "totalResults": len(resources) if total is None else total,
            "startIndex": start, "itemsPerPage": len(resources), "Resources": resources}
