"""The identity provider page's group-mapping rules (DESIGN.md 3.3): IdP group -> team and team role,
and/or org role; created, edited in place and deleted by identity.mappings, which re-applies them to
the groups' members at once and audits each change (admins and owners; a rule granting owner: owners).
"""

from __future__ import annotations

from flask import Blueprint, g, request
from werkzeug.wrappers import Response

from identity import directory, mappings, orgs
from identity.errors import DomainError
from identity.mappings import MAPPING_FIELDS
from identity.web.console.common import console_page, field, may, reading
from identity.web.console.idp import Outcome, change, refused

bp = Blueprint("console_idp_mappings", __name__, url_prefix="/console")
ANCHOR = "#mappings"


def _rule_fields() -> dict[str, str | None]:
    """The rule as posted, its team (typed by name or id: no list of every team in the form) found
    by identity.directory.find_team; NotFound names the team field."""
    fields = {name: field(name)[:255] or None for name in MAPPING_FIELDS}
    if fields["team_id"]:
        with reading() as session:
            fields["team_id"] = directory.find_team(session, g.actor, g.caller.org_id, fields["team_id"]).id
    return fields


@bp.post("/idp/mappings")
@console_page
def create_mapping() -> Response:
    """Add a rule; the group's members get what it grants now."""
    outcome = Outcome("mapping-new", ANCHOR, "Group mapping added.")
    try:
        rule = _rule_fields()
    except DomainError as error:
        return refused(error, outcome.form)
    return change(outcome, mappings.create_mapping, g.caller.org_id, **rule)


@bp.post("/idp/mappings/<mapping_id>")
@console_page
def update_mapping(mapping_id: str) -> Response:
    """Edit a rule in place (its id stays); the matching groups' members are updated at once."""
    outcome = Outcome(f"mapping-{mapping_id}", ANCHOR, "Group mapping saved.")
    try:
        rule = _rule_fields()
    except DomainError as error:
        return refused(error, outcome.form)
    return change(outcome, mappings.update_mapping, g.caller.org_id, mapping_id, rule)


@bp.post("/idp/mappings/<mapping_id>/delete")
@console_page
def delete_mapping(mapping_id: str) -> Response:
    """Delete a rule; its groups' members keep only what the other rules give."""
    return change(Outcome(f"mapping-{mapping_id}", ANCHOR, "Group mapping deleted."), mappings.delete_mapping,
                  g.caller.org_id, mapping_id)


@bp.post("/idp/group-sync")
@console_page
def change_group_sync() -> Response:
    """Set how unmapped IdP groups are treated (`mirror`: each becomes a team; `mapped`: only rules count)
    and, for owners, whether a rule may grant owner (identity.orgs.update_settings decides and audits)."""
    changes: dict[str, object] = {"group_sync": field("group_sync")}
    if may("trust.manage"):  # only an owner's form offers it: an admin's would be refused whole
        changes["idp_may_grant_owner"] = request.form.get("idp_may_grant_owner") == "on"
    return change(Outcome("group_sync", ANCHOR, "Group sync saved."), orgs.update_settings, g.caller.org_id, changes)
