"""SCIM Users (RFC 7644 sections 3.3-3.6): list, search, create, read, replace, patch, delete.

Each handler reads the request into the domain's fields, calls one identity.users or
identity.user_profile service in one transaction, and renders the user; PUT and PATCH answer
with the user as read afterwards.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy.orm import Session

from audit import Actor
from identity import user_profile, users
from identity.models import User
from identity.vocabulary import GrantSource
from scim import context, discovery, idp_lookups, listing, provisioning_status, resources
from scim.auth import run_write
from scim.context import Result
from scim.patch import parse_operations
from scim.patch_resource import patch_user as patch_user_doc
from scim.streaming import respond
from scim.web import bp


def _user_result(status: int, user: User, groups_of_user: list[tuple[str, str]]) -> Result:
    body = resources.user_to_wire(user, context.base_url(), groups_of_user)
    return status, body, {"ETag": body["meta"]["version"], "Location": body["meta"]["location"]}


def _version(session: Session, user: User) -> str:
    """The user's version as its ETag names it, groups included (`resources.user_version`)."""
    return resources.user_version(user.version, listing.groups_of(session, [user.id])[user.id])


def _if_match(session: Session) -> users.Check:
    """If-Match as the domain's precondition on a member: it runs the check against the member as
    read under the lock its change takes (not as this handler read it, maybe before another change
    of it committed), before anything is written."""
    return lambda user: context.check_if_match(lambda: _version(session, user))


def list_users(params: dict[str, Any]) -> Result:
    """List or search the org's users (RFC 7644 section 3.4.2), a page at a time."""
    query = listing.read_query(params)
    with context.reading() as session:
        total, found = idp_lookups.find(idp_lookups.USERS, session, context.org_id(), query) or \
            listing.list_users(session, context.org_id(), query)
        # `meta.version` counts the groups too (resources.user_version): read for either.
        shown = query.wants("groups") or query.wants("meta")
        memberships = listing.groups_of(session, [u.id for u in found]) if shown else {}
    return 200, users_page(query, total, found, memberships, context.base_url()), {}


def users_page(query: listing.Query, total: int, found: list[Any], memberships: dict[str, list[tuple[str, str]]],
               base: str) -> dict[str, Any]:
    """The ListResponse of a page of users with their groups (scim.lookup_front answers with it too)."""
    page = [query.project(resources.user_to_wire(u, base, memberships.get(u.id))) for u in found]
    return discovery.list_response(page, total, query.start)


def get_user(user_id: str, params: dict[str, Any] | None = None) -> Result:
    """Read one user, with its groups unless the client left them out."""
    query = listing.read_query(params or {})
    with context.reading() as session:
        user = users.get_user(session, context.org_id(), user_id)
        groups_of_user = listing.groups_of(session, [user.id])[user.id]  # its ETag counts them
        if (unchanged := context.not_modified(resources.user_version(user.version, groups_of_user))) is not None:
            return unchanged
        status, body, headers = _user_result(200, user, groups_of_user)
    return status, query.project(body or {}), headers


def create_user(body: Any) -> Result:
    """Provision a user from the IdP (RFC 7644 section 3.3)."""
    fields = resources.user_fields(body)
    actor = context.actor()
    user = run_write(users.provision_user, actor.org_id or "",
               source=GrantSource.SCIM, **fields)
    return _user_result(201, user, [])


def replace_user(user_id: str, body: Any, params: dict[str, Any] | None = None) -> Result:
    """Make a user what the IdP sent (RFC 7644 section 3.5.1)."""
    fields = resources.user_fields(body)

    # Named `replace`, `patch` and `remove`: a refused change's audit event names its service so.
    def replace(session: Session, actor: Actor) -> User:
        return user_profile.sync_user(session, actor, actor.org_id or "", user_id, fields, check=_if_match(session))

    _note_kept_owner(run_write(replace), fields)
    return get_user(user_id, params)


def patch_user(user_id: str, body: Any, params: dict[str, Any] | None = None) -> Result:
    """Patch a user (RFC 7644 section 3.5.2): the whole user patched, then synced as a PUT would."""
    operations = parse_operations(body)

    def patch(session: Session, actor: Actor) -> tuple[User, dict[str, Any]]:
        user = users.get_user(session, actor.org_id or "", user_id)
        fields = resources.user_fields(patch_user_doc(resources.user_to_wire(user, context.base_url()), operations))
        return user_profile.sync_user(session, actor, actor.org_id or "", user_id, fields,
                                      check=_if_match(session)), fields

    _note_kept_owner(*run_write(patch))
    return get_user(user_id, params)


def delete_user(user_id: str) -> Result:
    """Delete a user at the IdP's request (RFC 7644 section 3.6)."""
    def remove(session: Session, actor: Actor) -> User:
        # If-Match is checked against the member as remove_user reads it, under the org's lock.
        return users.remove_user(session, actor, actor.org_id or "", user_id, check=_if_match(session))

    removed = run_write(remove)
    if removed.deleted_at is None:
        provisioning_status.remember_skipped(f"{KEPT_OWNER}: the deletion was skipped ({removed.user_name})")
    return 204, None, {}


# What the IdP's admin reads on the status page when a 2xx answer kept the org's last active owner
# (identity.owners.protect_last_owner skipped the change and audited it as member.last_owner_protected).
KEPT_OWNER = "kept: the org's last active owner"


def _note_kept_owner(user: User, fields: dict[str, Any]) -> None:
    """Keep a deactivation the domain skipped (the last active owner) among the status page's refusals."""
    if fields.get("active") is False and user.active:
        provisioning_status.remember_skipped(f"{KEPT_OWNER}: the deactivation was skipped ({user.user_name})")


@bp.get("/Users")
def users_list() -> Response:
    return respond(list_users(request.args.to_dict()))


@bp.post("/Users/.search")
def users_search() -> Response:
    return respond(list_users(context.search_body()))


@bp.post("/Users")
def users_create() -> Response:
    return respond(create_user(context.body()))


@bp.get("/Users/<user_id>")
def users_get(user_id: str) -> Response:
    return respond(get_user(user_id, request.args.to_dict()))


@bp.put("/Users/<user_id>")
def users_replace(user_id: str) -> Response:
    return respond(replace_user(user_id, context.body(), request.args.to_dict()))


@bp.patch("/Users/<user_id>")
def users_patch(user_id: str) -> Response:
    return respond(patch_user(user_id, context.body(), request.args.to_dict()))


@bp.delete("/Users/<user_id>")
def users_delete(user_id: str) -> Response:
    return respond(delete_user(user_id))
