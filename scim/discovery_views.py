"""SCIM discovery (RFC 7644 section 4): ServiceProviderConfig, ResourceTypes, Schemas; and the
root /.search over every resource type (scim.root_search)."""

from __future__ import annotations

from flask import Response

from scim import context, discovery, errors
from scim.root_search import search_resources
from scim.streaming import respond
from scim.web import bp


@bp.post("/.search")
def root_search() -> Response:
    """Search Users and Groups together (RFC 7644 section 3.4.3; scim.root_search)."""
    return respond(search_resources(context.search_body()))


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    return respond((200, discovery.service_provider_config(context.base_url()), {}))


@bp.get("/ResourceTypes")
def resource_types() -> Response:
    found = discovery.resource_types(context.base_url())
    return respond((200, discovery.list_response(found), {}))


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str) -> Response:
    found = next((r for r in discovery.resource_types(context.base_url()) if r["id"] == name), None)
    if found is None:
        raise errors.NotFound(f"no resource type {name!r}")
    return respond((200, found, {}))


@bp.get("/Schemas")
def schemas() -> Response:
    return respond((200, discovery.list_response(discovery.schemas(context.base_url())), {}))


@bp.get("/Schemas/<path:urn>")
def schema(urn: str) -> Response:
    found = next((s for s in discovery.schemas(context.base_url()) if s["id"] == urn), None)
    if found is None:
        raise errors.NotFound(f"no schema {urn!r}")
    return respond((200, found, {}))
