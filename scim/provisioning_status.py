"""Each SCIM request, kept for the org's provisioning status (identity.provisioning_log): what the
IdP setup page shows an IT admin whose Okta or Entra ID reports a provisioning error.

Cheap on the hot path: identity.provisioning_log.Throttle lets an org's successes through at most
once per 10 seconds per process (the status shows when the IdP last called, not every call), and a
refusal of one status and reason once a second, so that an IdP retrying a bad request in a loop
writes a row a second at most, into a table that stays bounded whatever comes in. A refusal of an
unknown credential names no org and is kept nowhere (nobody's page could show it).
"""

from __future__ import annotations

from flask import Response, g, request

from identity import provisioning_log
from identity.provisioning_log import Attempt
from scim import context

THROTTLE = provisioning_log.Throttle()


def remember_refusal(status: int, detail: str) -> None:
    """Note the error this request is answered with (scim.web.error_response calls it)."""
    g.scim_refusal = (status, detail)


def remember_org(org_id: str | None, reason: str | None) -> None:
    """Note the org (and a reason for its admin) of a credential refused before the request had an actor."""
    g.scim_refused_org = (org_id, reason)


def remember_skipped(detail: str) -> None:
    """Note that this request is answered 2xx though the domain kept what it asked to change (the
    org's last active owner): it is kept among the refusals, with `detail`, for the IdP's admin."""
    g.scim_skipped = detail


def note_request(response: Response) -> Response:
    """Keep this request in its org's provisioning status when the throttle lets it through."""
    actor = g.get("scim_actor")
    hinted_org, hinted_reason = g.get("scim_refused_org", (None, None))
    org_id = actor.org_id if actor is not None else hinted_org
    if not org_id:
        return response
    detail = g.get("scim_refusal", (None, None))[1]
    refused = response.status_code >= 400
    skipped = None if refused else g.get("scim_skipped")
    attempt = Attempt("scim", request.method, _route(), response.status_code,
                      (hinted_reason or detail or response.status) if refused else skipped,
                      None if actor is None else actor.display, g.get("request_id"), skipped=skipped is not None)
    provisioning_log.keep(context.database(), THROTTLE, org_id, attempt)
    return response


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "-"
