"""SCIM Groups (RFC 7644 sections 3.3-3.6): list, search, create, read, replace, patch, delete.

PUT and PATCH become one `identity.groups.GroupChange` (new attributes, then members replaced,
removed or added) and one call of `change_group`. A group's members are streamed when it is read
(scim.streaming); a PATCH never reads them (scim.patch_members).
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy.orm import Session

from audit import Actor
from identity import group_locks, groups
from identity.groups import GroupChange
from identity.models import IdpGroup
from scim import context, discovery, errors, idp_lookups, listing, resources
from scim.auth import run_write
from scim.context import Result
from scim.patch import parse_operations
from scim.patch_members import GroupPatchPlan, only_members, plan_group_patch
from scim.schema import GROUP
from scim.streaming import members_for, respond
from scim.web import bp

# Attributes of a group's wire JSON that are not kept in its `attributes`.
_NOT_ATTRIBUTES = resources.COMPUTED | {"members", "displayName", "externalId"}


def _group_result(status: int, group: IdpGroup,
                  members: list[tuple[str, str | None]] | resources.MembersToStream | None) -> Result:
    body = resources.group_to_wire(group, context.base_url(), members)
    return status, body, {"ETag": resources.etag(group.version), "Location": body["meta"]["location"]}


def list_groups(params: dict[str, Any]) -> Result:
    """List or search the org's groups (RFC 7644 section 3.4.2), a page at a time."""
    query = listing.read_query(params)
    with context.reading() as session:
        total, found = idp_lookups.find(idp_lookups.GROUPS, session, context.org_id(), query) or \
            listing.list_groups(session, context.org_id(), query)
        members = _members(session, [x.id for x in found], query)
        page = [query.project(resources.group_to_wire(x, context.base_url(), members.get(x.id))) for x in found]
    return 200, discovery.list_response(page, total, query.start), {}


def get_group(group_id: str, params: dict[str, Any] | None = None) -> Result:
    """Read one group, with its members unless the client left them out."""
    query = listing.read_query(params or {})
    with context.reading() as session:
        group = groups.get_group(session, context.org_id(), group_id)
        if (unchanged := context.not_modified(group.version)) is not None:
            return unchanged
        status, body, headers = _group_result(200, group, _members(session, [group.id], query).get(group.id))
    return status, query.project(body or {}), headers


def _members(session: Session, group_ids: list[str], query: listing.Query) -> dict[str, Any]:
    """The groups' members as the query shows them: none, streamed whole, or read now when the client
    picks sub-attributes of each (`members.value`), which a stream cannot project."""
    if not query.wants("members"):
        return {}
    if query.wants_whole("members"):
        return members_for(session, group_ids)
    return listing.members_of(session, group_ids)


def create_group(body: Any) -> Result:
    """Create a group with its first members (RFC 7644 section 3.3)."""
    fields = resources.group_fields(body)
    actor = context.actor()
    group = run_write(groups.create_group, actor.org_id or "", **fields, adopt_claimed=True)
    _, created, headers = get_group(group.id)
    return 201, created, headers


def replace_group(group_id: str, body: Any, params: dict[str, Any] | None = None) -> Result:
    """Make a group, members included, what the IdP sent (RFC 7644 section 3.5.1)."""
    fields = resources.group_fields(body)
    change = GroupChange(display_name=fields["display_name"], external_id=fields["external_id"],
                         clear_external_id=fields["external_id"] is None, attributes=fields["attributes"],
                         members=tuple(fields["member_ids"]))

    def replace(session: Session, actor: Actor) -> None:
        # If-Match is checked against the group as the domain reads it under its lock, which it takes
        # after the org's for a new name (identity.group_locks' order): locked here first, a rename
        # would wait for the org's lock holding the group, as a member shown anew waits the other way.
        groups.change_group(session, actor, actor.org_id or "", group_id, change,
                            check=lambda group: context.check_if_match(group.version))

    run_write(replace)
    return get_group(group_id, params)


def patch_group(group_id: str, body: Any, params: dict[str, Any]) -> Result:
    """Patch a group (RFC 7644 section 3.5.2); 204 unless the client asked for attributes back."""
    operations = parse_operations(body)

    def patch(session: Session, actor: Actor) -> None:
        # The plan starts from the group's current state, read under its lock; If-Match checked against it.
        group = groups.lock_for_change(session, actor.org_id or "", group_id,
                                       may_rename=not only_members(operations))
        context.check_if_match(group.version)
        plan = plan_group_patch(resources.group_to_wire(group, context.base_url(), None), operations)
        groups.change_group(session, actor, actor.org_id or "", group_id, _change_of(plan))

    run_write(patch)
    if not any(k.lower() in ("attributes", "excludedattributes") for k in params):
        return 204, None, {}
    return get_group(group_id, params)


def _change_of(plan: GroupPatchPlan) -> GroupChange:
    """The domain's change for a planned PATCH: the patched group's attributes, then its member deltas."""
    fields = resources.normalize(plan.resource, GROUP)
    display_name = fields.get("displayName")
    if not isinstance(display_name, str) or not display_name.strip():
        raise errors.InvalidValue("displayName is required")
    external_id = fields.get("externalId")
    if external_id is not None and not isinstance(external_id, str):
        raise errors.InvalidValue("externalId must be a string")
    return GroupChange(display_name=display_name, external_id=external_id,
                       clear_external_id=external_id in (None, ""),
                       attributes={k: v for k, v in fields.items() if k not in _NOT_ATTRIBUTES},
                       members=plan.replace_all, removed=plan.removed, added=plan.added)


def delete_group(group_id: str) -> Result:
    """Delete a group: its members lose what it granted (RFC 7644 section 3.6)."""
    def remove(session: Session, actor: Actor) -> None:
        context.check_if_match(group_locks.lock_group(session, actor.org_id or "", group_id).version)
        groups.delete_group(session, actor, actor.org_id or "", group_id)

    run_write(remove)
    return 204, None, {}


@bp.get("/Groups")
def groups_list() -> Response:
    return respond(list_groups(request.args.to_dict()))


@bp.post("/Groups/.search")
def groups_search() -> Response:
    return respond(list_groups(context.search_body()))


@bp.post("/Groups")
def groups_create() -> Response:
    return respond(create_group(context.body()))


@bp.get("/Groups/<group_id>")
def groups_get(group_id: str) -> Response:
    return respond(get_group(group_id, request.args.to_dict()))


@bp.put("/Groups/<group_id>")
def groups_replace(group_id: str) -> Response:
    return respond(replace_group(group_id, context.body(), request.args.to_dict()))


@bp.patch("/Groups/<group_id>")
def groups_patch(group_id: str) -> Response:
    return respond(patch_group(group_id, context.body(), request.args.to_dict()))


@bp.delete("/Groups/<group_id>")
def groups_delete(group_id: str) -> Response:
    return respond(delete_group(group_id))
