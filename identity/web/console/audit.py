"""Console page: the audit log (DESIGN.md 6), for those who may read it (identity.roles: `audit.read`).

Filters by time range, action, actor, target and outcome; a page of events, newest first (or in
chain order, `order=oldest`), with
each event's changes (before and after); a download of exactly the filtered selection as JSON
Lines, CSV or OCSF, served by the admin API's export (identity.web.api.audit_log, which records
`audit.exported`); the chain's verification on request (recorded `audit.verified`) and the
public key that verifies the service's signed checkpoints, for auditors. Reading a page is itself
audited (`audit.read`), as through the API.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from audit import checkpoints, clock, events, export, signing, verify
from audit.actor import ACTOR_TYPES
from identity import audit_access
from identity.audit_filters import FILTERS, selection_of
from identity.errors import DomainError
from identity.web.api.audit_log import filters_from, signing_key
from identity.web.console.common import FORM_ERROR, console_page, form_errors, may, reading, render, submit

bp = Blueprint("console_audit", __name__, url_prefix="/console")
PAGE = 50
DEFAULT_DAYS = 7  # a first visit shows the last week, with `since` filled in so the download says so
OUTCOMES = ("success", "failure", "refused")


@bp.get("/audit")
@console_page
def audit_page() -> Response:
    """Show a page of the filtered events, the downloads of that selection, and the auditor's panel."""
    if not may("audit.read"):
        return _not_for_you()
    args = request.args if any(request.args.get(name) for name in FILTERS) else _default_args()
    filters = filters_from(args)
    newest = request.args.get("order", "newest") != "oldest"  # auditors look at what just happened first
    try:
        selection = selection_of(g.caller.org_id, filters, 0 if newest else _number("after"))
        page = submit(audit_access.read_events, selection, PAGE, newest_first=newest,
                      before_seq=(_number("before") or None) if newest else None)
    except DomainError as error:
        return _render(filters, [], None, newest, status=400, errors=form_errors(error))
    rows = [_event(events.document(row)) for row in page.rows]
    more = len(rows) == PAGE and not (newest and page.ended)
    return _render(filters, rows, page.position if more else None, newest)


@bp.post("/audit/verify")
@console_page
def verify_chain() -> Response:
    """Verify the org's stored chain now, record the result (`audit.verified`) and show it."""
    if not may("audit.read"):
        return _not_for_you()
    with reading() as session:
        report = verify.verify_database(session, g.caller.org_id, signing_key().public_key())
    submit(audit_access.record_verification, g.caller.org_id, {
        "intact": report.intact, "checked": report.checked, "last_seq": report.last_seq,
        "broken_seq": report.broken.seq if report.broken else None, "reconciled": None, "findings": 0,
        "first_findings": []})
    return _render(filters_from(_default_args()), [], None, verification=report)


@bp.post("/audit/checkpoint")
@console_page
def sign_checkpoint() -> Response:
    """Verify and sign the chain's head now (`audit.checkpoint_created`) and hand the checkpoint over to keep."""
    if not may("audit.read"):
        return _not_for_you()
    try:
        made = submit(audit_access.sign_checkpoint, signing_key(), g.caller.org_id)
    except checkpoints.UnverifiedHead as broken:  # nothing is signed over a broken chain: that is the finding
        return _render(filters_from(_default_args()), [], None, status=409, errors={FORM_ERROR: str(broken)})
    name = f"checkpoint-{g.caller.org_slug}-{made.seq}.json"
    return Response(json.dumps({"id": made.id, **checkpoints.document(made)}, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _not_for_you() -> Response:
    return render("console/refused.html", status=403, title="Audit log", nav="audit",
                  message="Only the org's owners and admins read the audit log.")


def _default_args() -> MultiDict[str, str]:
    since = clock.now() - dt.timedelta(days=DEFAULT_DAYS)
    return MultiDict({"since": since.strftime("%Y-%m-%dT%H:%M")})


def _number(name: str) -> int:
    """A page position from the query (`after`, `before`): a sequence number, else 0."""
    value = request.args.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else 0


def _event(doc: dict[str, Any]) -> dict[str, Any]:
    """An event with its changes split into fields that changed (before, after) and context."""
    changed, context = [], []
    for name, value in (doc.get("changes") or {}).items():
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            changed.append((name, _shown(value["before"]), _shown(value["after"])))
        else:
            context.append((name, _shown(value)))
    return {**doc, "changed": changed, "context": context}


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _render(filters: dict[str, Any], rows: list[dict[str, Any]], next_position: int | None,
            newest_first: bool = True, *, status: int = 200, errors: dict[str, str] | None = None,
            verification: verify.Report | None = None) -> Response:
    query = [(name, value) for name, value in filters.items() if name != "action"]
    query += [("action", ",".join(filters["action"]))] if filters.get("action") else []
    order = [("order", "newest" if newest_first else "oldest")]
    position = [("before" if newest_first else "after", next_position)]
    key = signing_key()
    with reading() as session:
        newest = audit_access.newest_checkpoint(session, g.actor, g.caller.org_id)
    return render("console/audit.html", newest=newest, status=status, errors=errors, title="Audit log", nav="audit",
                  filters={**filters, "action": ",".join(filters.get("action", []))}, rows=rows,
                  outcomes=OUTCOMES, actor_types=ACTOR_TYPES, formats=export.FORMATS,
                  export_base=f"/api/v1/orgs/{g.caller.org_slug}/audit-events/export",
                  export_query=urlencode(query), newest_first=newest_first,
                  next_query=urlencode([*query, *order, *position]) if next_position is not None else None,
                  verification=verification,
                  key_id=signing.key_id(key), public_pem=signing.public_pem(key))
