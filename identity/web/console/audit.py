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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, g, request
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from audit import checkpoints, clock, events, export, signing, verify
from audit.actor import ACTOR_TYPES
from identity import audit_access
from identity.audit_filters import selection_of
from identity.errors import DomainError
from identity.web.api.audit_log import filters_from, signing_key
from identity.web.console.common import FORM_ERROR, console_page, form_errors, may, reading, render, submit

bp = Blueprint("console_audit", __name__, url_prefix="/console")
PAGE = 50
NEWER_COUNTED = 1000  # past this many newer events the page says "1000 or more"
DEFAULT_DAYS = 7  # a first visit shows the last week, with `since` filled in so the download says so
OUTCOMES = ("success", "failure", "refused")


@bp.get("/audit")
@console_page
def audit_page() -> Response:
    """Show a page of the filtered events, the downloads of that selection, and the auditor's panel.

    A page is read from a position either way along the chain: `before` reads the older events
    below it, `after` the newer ones above it; each is shown in the order asked for, so a page
    leads forward (Next page) and back (Previous page) whichever order that is. The pages after the
    first keep to the log as it stood when that was shown (`upto`, its newest event then): what
    happened since, the reader's own reading (`audit.read`) among it, does not push the pages one
    saw, and going back leads to them; the page counts those newer events and links to them."""
    if not may("audit.read"):
        return _not_for_you()
    filters = filters_from(_asked())
    newest = _newest_first()  # auditors look at what just happened first
    before, after, bound = _number("before"), _number("after"), _number("upto") or None
    downward = bool(before) or (newest and not after)  # read newest first, below `before` (or the head)
    try:
        with reading() as session:
            selection = selection_of(session, g.caller.org_id, filters, 0 if downward else after, bound)
        page = submit(audit_access.read_events, selection, PAGE, newest_first=downward,
                      before_seq=before or None)
    except DomainError as error:
        return _render(filters, [], newest, status=400, errors=form_errors(error))
    with reading() as session:
        more = len(page.rows) == PAGE and _beyond(session, selection, page.rows, downward)  # the way it was read
        newer = 0 if bound is None else audit_access.count_events(
            session, g.actor, replace(selection, after_seq=bound, upto_seq=None), at_most=NEWER_COUNTED)
    rows = [_event(events.document(row)) for row in page.rows]
    rows = rows if downward == newest else rows[::-1]
    came_from = bool(before or after)  # a page reached from another, on the side it was read away from
    ahead, behind = (more, came_from and bool(rows)) if downward == newest else (came_from and bool(rows), more)
    return _render(filters, rows, newest, newer=newer, newer_all=newer < NEWER_COUNTED, pages=_pages(
        rows, newest, bound or page.last, ahead=ahead, behind=behind, first=came_from))


def _beyond(session: Session, selection: events.Selection, read: Sequence[Any], downward: bool) -> bool:
    """Tell whether the selection holds an event past the page `read`, the way it was read: a full
    page may be the last (exactly PAGE events left), whose next page would be empty."""
    edge = int(read[-1].seq)
    if downward:
        return audit_access.any_events(session, g.actor, selection, below_seq=edge)
    return audit_access.any_events(session, g.actor, replace(selection, after_seq=edge))


@bp.post("/audit/verify")
@console_page
def verify_chain() -> Response:
    """Verify the org's stored chain now, record the result (`audit.verified`) and show it, the filters kept."""
    if not may("audit.read"):
        return _not_for_you()
    with reading() as session:
        report = verify.verify_database(session, g.caller.org_id, signing_key().public_key())
    submit(audit_access.record_verification, g.caller.org_id, {
        "intact": report.intact, "checked": report.checked, "last_seq": report.last_seq,
        "broken_seq": report.broken.seq if report.broken else None, "reconciled": None, "findings": 0,
        "first_findings": []})
    return _render(filters_from(_asked()), [], _newest_first(), verification=report)


@bp.post("/audit/checkpoint")
@console_page
def sign_checkpoint() -> Response:
    """Verify and sign the chain's head now (`audit.checkpoint_created`) and hand the checkpoint over to keep."""
    if not may("audit.read"):
        return _not_for_you()
    try:
        made = submit(audit_access.sign_checkpoint, signing_key(), g.caller.org_id)
    except checkpoints.UnverifiedHead as broken:  # nothing is signed over a broken chain: that is the finding
        return _render(filters_from(_asked()), [], _newest_first(), status=409, errors={FORM_ERROR: str(broken)})
    name = f"checkpoint-{g.caller.org_slug}-{made.seq}.json"
    return Response(json.dumps({"id": made.id, **checkpoints.document(made)}, indent=2), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def _not_for_you() -> Response:
    return render("console/refused.html", status=403, title="Audit log", nav="audit",
                  message="Only the org's owners and admins read the audit log.")


def _asked() -> MultiDict[str, str]:
    """The query's filters; without `since` it is a first visit, which shows the last week.

    Only an absent `since` is: a form sent with From cleared (`since=`) asks for every event."""
    if "since" in request.args:
        return request.args
    asked = request.args.copy()
    asked["since"] = (clock.now() - dt.timedelta(days=DEFAULT_DAYS)).strftime("%Y-%m-%dT%H:%M")
    return asked


def _newest_first() -> bool:
    return request.args.get("order", "newest") != "oldest"


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


def _pages(rows: list[dict[str, Any]], newest_first: bool, bound: int, *, ahead: bool, behind: bool,
           first: bool) -> dict[str, list[tuple[str, Any]] | None]:
    """The positions of the pages around this one: `next` and `previous` in the order shown, and
    `first` (the newest, or the oldest), each None where there is no such page; each keeps the
    view's `bound` (`upto`: no event above it)."""
    kept = [("upto", bound)]
    if not rows:
        return {"next": None, "previous": None, "first": kept if first else None}
    older, newer = [("before", min(row["seq"] for row in rows))], [("after", max(row["seq"] for row in rows))]
    forward, back = (older, newer) if newest_first else (newer, older)
    return {"next": [*forward, *kept] if ahead else None, "previous": [*back, *kept] if behind else None,
            "first": kept if first else None}


def _render(filters: dict[str, Any], rows: list[dict[str, Any]], newest_first: bool = True, *, status: int = 200,
            errors: dict[str, str] | None = None, verification: verify.Report | None = None,
            pages: dict[str, list[tuple[str, Any]] | None] | None = None, newer: int = 0,
            newer_all: bool = True) -> Response:
    """The page; `newer`: the selected events recorded since the view's first page was shown (all of
    them, or only the first NEWER_COUNTED when `newer_all` is false)."""
    query = [(name, value) for name, value in filters.items() if name != "action"]
    query += [("action", ",".join(filters["action"]))] if filters.get("action") else []
    kept = [*query, *([] if filters.get("since") else [("since", "")]),  # an empty From asks for every event
            ("order", "newest" if newest_first else "oldest")]
    links = {name: None if position is None else urlencode([*kept, *position])
             for name, position in (pages or {}).items()}

    def only(name: str, value: str) -> str:
        """The query of these filters but `name` (actor, target): a row's "only these" narrows the selection."""
        return urlencode([(key, given) for key, given in kept if key != name] + [(name, value)])

    key = signing_key()
    with reading() as session:
        newest = audit_access.newest_checkpoint(session, g.actor, g.caller.org_id)
    return render("console/audit.html", newest=newest, status=status, errors=errors, title="Audit log", nav="audit",
                  filters={**filters, "action": ",".join(filters.get("action", []))}, rows=rows,
                  outcomes=OUTCOMES, actor_types=ACTOR_TYPES, formats=export.FORMATS,
                  export_base=f"/api/v1/orgs/{g.caller.org_slug}/audit-events/export",
                  export_query=urlencode(query), newest_first=newest_first, page_query=urlencode(kept),
                  links=links, only=only, verification=verification, newer=newer, newer_all=newer_all,
                  key_id=signing.key_id(key), public_pem=signing.public_pem(key))
