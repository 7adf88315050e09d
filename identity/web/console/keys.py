"""Console page: Keys: a member's own team API keys (create with a name, a team and scopes within
their role; rotate; revoke), the secret shown once with a copy button; owners and admins also see
every key of the org and make team service keys.

The secret is in the answer to the POST that made it, never in a redirect, a cookie or a later
page (`no-store`); the services are identity.keys', as the admin API's. Each create form carries a
one-time nonce, the new key's id (identity.made_once): a reload of the page that showed the secret
sends the form again, which makes no second key: it goes back to the list (303), with a notice that
the key exists and its secret cannot be shown again.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

from flask import Blueprint, g, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from identity import directory, key_list, keys, wallet_controls
from identity.errors import DomainError
from identity.keys import Issued
from identity.made_once import AlreadyMade
from identity.roles import allowed_scopes
from identity.vocabulary import Role
from identity.web.console.common import (
    FORM_ERROR,
    console_page,
    field,
    form_errors,
    may,
    page_link,
    page_position,
    placed,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_keys", __name__, url_prefix="/console")
PAGE = "/console/keys"
SHOWN = 100  # keys on a page of each list; each links to its next and previous page
POSITION = ("mine_after", "mine_before", "after", "before")  # where each list is (a row's form carries it back)
SCOPE_HELP = {"inference": "call models through the gateway", "usage.read": "read usage",
              "directory.read": "read members and teams", "admin": "use the admin API as you"}


def _page(*, status: int = 200, errors: dict[str, str] | None = None, issued: Issued | None = None,
          issued_for: str = "") -> Response:
    """Your keys and (for owners and admins) every other key, each list in keyset pages of its own
    (`?mine_after=`/`mine_before=`, `?after=`/`before=`); only the names of your own teams are read."""
    with reading() as session:
        own = _keys(session, "mine", "mine_")
        others = _keys(session, "others", "") if may("keys.read") else key_list.KeyPage([], None)
        mine = directory.get_member(session, g.actor, g.caller.org_id, g.caller.user_id).teams
        names = directory.team_names(session, g.actor, g.caller.org_id, mine)
        holder_roles = key_list.holder_roles(session, others.entries)
        entries = own.entries + others.entries
        held = wallet_controls.rotation_held(session, g.caller.org_id, [entry.key.id for entry in entries])
        actions = {entry.key.id: key_actions(session, entry, holder_roles, held) for entry in entries}
    errors = placed(errors, {"key-": actions})
    my_teams = sorted(({"id": team_id, "name": name} for team_id, name in names.items()), key=lambda t: t["name"])
    return render("console/keys.html", status=status, errors=errors, title="Keys", nav="keys", own=own,
                  others=others, my_teams=my_teams,
                  scopes=sorted(allowed_scopes(g.caller.role)) if may("own_keys.manage") else [],
                  key_actions=lambda entry: actions[entry.key.id], service_scopes=sorted(keys.SERVICE_KEY_SCOPES),
                  scope_help=SCOPE_HELP, issued=issued, issued_for=issued_for, here=page_position(*POSITION),
                  nonces={form: str(uuid.uuid4()) for form in ("own", "service")})  # identity.made_once


def _keys(session: Session, whose: str, prefix: str) -> key_list.KeyPage:
    """The page of `whose` keys (mine, others) that the query's `<prefix>after`/`<prefix>before` ask for."""
    return key_list.list_api_keys(session, g.actor, g.caller.org_id, limit=SHOWN, whose=whose,
                              after=request.values.get(f"{prefix}after", ""),
                              before=request.values.get(f"{prefix}before", ""))


@bp.get("/keys")
@console_page
def keys_page() -> Response:
    """Your keys (and, for owners and admins, every key of the org)."""
    return _page()


def _issued(issued: Issued, what: str) -> Response:
    """The page that shows a new secret, once."""
    response = _page(issued=issued, issued_for=what)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(error: DomainError, prefix: str = "") -> Response:
    """The page with the error next to its field of the form `prefix` names ("" or "service-"); a form
    sent again (a reload of the page that showed the secret) goes back to the list, to the key it made."""
    if isinstance(error, AlreadyMade):
        return redirect_with_notice(f"{PAGE}#key-{error.made_id}", error.message)
    found = form_errors(error)
    return _page(status=status_of(error), errors={
        name if name == FORM_ERROR else f"{prefix}{name}": message for name, message in found.items()})


@bp.post("/keys")
@console_page
def create_key() -> Response:
    """Make one of your own keys in one of your teams."""
    try:
        issued = submit(keys.create_api_key, g.caller.org_id, user_id=g.caller.user_id, team_id=field("team_id"),
                        name=field("name"), scopes=request.form.getlist("scopes"), made_as=field("nonce") or None)
    except DomainError as error:
        return _refused(error)
    return _issued(issued, f"Key {field('name')}" if field("name") else "Your new key")


@bp.post("/keys/service")
@console_page
def create_service_key() -> Response:
    """Make a team service key (owners and admins): it belongs to the team (typed by name or id), not
    to a person."""
    try:
        with reading() as session:
            team = directory.find_team(session, g.actor, g.caller.org_id, field("team_id"))
        issued = submit(keys.create_service_key, g.caller.org_id, team_id=team.id, name=field("name"),
                        scopes=request.form.getlist("scopes"), made_as=field("nonce") or None)
    except DomainError as error:
        return _refused(error, "service-")
    return _issued(issued, f"Service key {field('name')}" if field("name") else "Your new service key")


@bp.post("/keys/<key_id>/rotate")
@console_page
def rotate_key(key_id: str) -> Response:
    """Make the key's successor; the old secret keeps working for the grace period (24 hours)."""
    try:
        issued = submit(keys.rotate_api_key, g.caller.org_id, key_id)
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"key-{key_id}"))
    return _issued(issued, "The rotated key")


@bp.post("/keys/<key_id>/revoke")
@console_page
def revoke_key(key_id: str) -> Response:
    try:
        submit(keys.revoke_api_key, g.caller.org_id, key_id)
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"key-{key_id}"))
    return redirect_with_notice(f"{page_link(PAGE, page_position(*POSITION))}#key-{key_id}",
                                "Key revoked: it no longer works.")


def key_actions(session: Session, entry: key_list.KeyEntry, holder_roles: Mapping[str, Role],
                held: Collection[str]) -> dict[str, Any]:
    """Which buttons a key's row offers: rotate and revoke while it is usable, and only where the
    signed-in person may (identity.keys.may_act_on_key: the services' own rule, given the page's
    holders' roles read once); no rotate for a key in `held` (identity.wallet_controls.rotation_held:
    a limited key whose predecessor is still in its grace, which the rotation refuses)."""
    live = entry.state in ("active", "rotating")
    rotatable = entry.state == "active" and entry.key.rotated_to is None and entry.key.id not in held
    org_id, key = g.caller.org_id, entry.key
    return {"rotate": rotatable and keys.may_act_on_key(session, g.actor, org_id, key, rotate=True,
                                                        holder_roles=holder_roles),
            "revoke": live and keys.may_act_on_key(session, g.actor, org_id, key, holder_roles=holder_roles)}
