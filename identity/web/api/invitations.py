"""Admin API for invitations and the mail outbox (under /api/v1).

An invitation's answer carries its accept link (BASE_URL + /invite/<token>: the console's page,
identity.web.console.invitation); its mail is queued in the outbox in the same transaction and
delivered after the commit when SMTP_URL is set (identity.mail), older undelivered mails with it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from audit import Actor
from identity import directory, invitations, mail, members, outbox
from identity.directory import InvitationEntry
from identity.members import Invited
from identity.paging import Position
from identity.service import run
from identity.vocabulary import InvitationStatus, Role
from identity.web.api.common import (
    ADMIN,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    optional_text,
    request_actor,
    role,
    text,
    when,
)
from identity.web.api.members import member_json
from identity.web.api.query import LIMIT_QUERY, after_id, list_page, one_arg, page_limit
from identity.web.context import database

bp = adopt(Blueprint("api_invitations", __name__, url_prefix="/api/v1"))


def base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def transport() -> mail.Transport | None:
    """The SMTP transport of the app's SMTP_URL, or None (the outbox keeps the mail)."""
    return mail.configured(current_app.config, base_url())


def deliver(actor: Actor, ids: list[str] | None = None) -> mail.Report:
    """Deliver these mails now, with older undelivered ones (bounded), when SMTP is configured."""
    return mail.deliver(database(), transport(), actor, ids=ids)


def invitation_json(invitation: InvitationEntry) -> dict[str, Any]:
    """Render an invitation as the admin API shows it."""
    return {"id": invitation.id, "email": invitation.email, "role": invitation.role, "team_id": invitation.team_id,
            "status": invitation.status, "expires_at": invitation.expires_at.isoformat(),
            "created": when(invitation.created)}


def send_invitation_mail(actor: Actor, invitation_id: str) -> tuple[str | None, str | None]:
    """Deliver the invitation's undelivered mail now (when SMTP is configured); return its id and status."""
    with database().reading() as session:
        mail_id = outbox.undelivered_for(session, invitation_id)
    deliver(actor, [mail_id] if mail_id else None)
    with database().reading() as session:
        state = outbox.status_of(session, mail_id) if mail_id else None
    return mail_id, state


def _sent(invited: Invited) -> dict[str, Any]:
    """An invitation just made or resent: its token and link (shown once), the seats, the mail's fate."""
    mail_id, state = send_invitation_mail(g.actor, invited.invitation.id)
    return {**invitation_json(invited.invitation), "token": invited.token, "link": invited.link,
            "seats": invited.seats.as_dict(), "mail": {"id": mail_id, "status": state}}


@bp.post("/orgs/<org_ref>/invitations")
@authenticated(scope=ADMIN)
def create_invitation(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("email", "role", "team_id")
    invited = run(database(), g.actor, members.invite_member, org_id, email=text(data, "email", ""),
                  role=role(data) or Role.MEMBER, team_id=optional_text(data, "team_id"), base_url=base_url())
    return jsonify(_sent(invited)), 201


@bp.get("/orgs/<org_ref>/invitations")
@authenticated(scope=ADMIN)
def list_invitations(org_ref: str) -> Response:
    """Newest first; an invitation past its time is `expired` here whether or not the sweep has run."""
    org_id, wanted = caller_org_id(org_ref), one_arg("status")
    return list_page("invitations", lambda session, window: directory.list_invitations(
        session, g.actor, org_id, window, status=wanted), invitation_json, lambda i: Position(i.created, i.id))


@bp.delete("/orgs/<org_ref>/invitations/<invitation_id>")
@authenticated(scope=ADMIN)
def revoke_invitation(org_ref: str, invitation_id: str) -> tuple[str, int]:
    run(database(), g.actor, invitations.revoke, caller_org_id(org_ref), invitation_id)
    return "", 204


@bp.post("/orgs/<org_ref>/invitations/<invitation_id>/resend")
@authenticated(scope=ADMIN)
def resend_invitation(org_ref: str, invitation_id: str) -> Response:
    invited = run(database(), g.actor, members.resend_invitation, caller_org_id(org_ref), invitation_id,
                  base_url=base_url())
    return jsonify(_sent(invited))


def _invitation_token() -> tuple[str, Actor]:
    """Read the link token and its holder (recording its expiry first, in a transaction of its own)."""
    token = text(json_body("token"), "token", "")
    return token, _holder(token)


def _holder(token: str) -> Actor:
    with database().transaction() as session:
        return members.invitation_holder(session, token, request_actor)


@bp.post("/invitations/accept")
def accept_invitation() -> tuple[Response, int]:
    """Accept with the link's token (the token is the credential; no API key)."""
    token, actor = _invitation_token()
    return jsonify(member_json(run(database(), actor, members.accept_invitation, token))), 201


@bp.post("/invitations/decline")
def decline_invitation() -> tuple[str, int]:
    token, actor = _invitation_token()
    run(database(), actor, invitations.decline, token)
    return "", 204


def mail_json(entry: outbox.MailEntry) -> dict[str, Any]:
    return {"id": entry.id, "kind": entry.kind, "to": entry.to, "subject": entry.subject, "status": entry.status,
            "attempts": entry.attempts, "last_error": entry.last_error, "created": when(entry.created),
            "sent": when(entry.sent), "link": entry.link}


@bp.get("/orgs/<org_ref>/outbox")
@authenticated(scope=ADMIN)
def list_outbox(org_ref: str) -> Response:
    """The org's mails, newest first (keyset pages); an undelivered invitation shows its link."""
    org_id = caller_org_id(org_ref)
    limit = page_limit()
    with database().reading() as session:
        page = outbox.list_outbox(session, g.actor, org_id, status=one_arg("status"), limit=limit,
                                  after=after_id())
    return jsonify({"mails": [mail_json(m) for m in page.mails], "next": page.next})


_INVITATION_FIELDS: dict[str, Any] = {
    "id": {"type": "string"}, "email": {"type": "string"}, "role": {"type": "string"},
    "team_id": {"type": ["string", "null"]}, "status": {"type": "string", "enum": [
        "pending", "accepted", "declined", "expired", "revoked"]},
    "expires_at": {"type": "string"}, "created": {"type": ["string", "null"]}}
_INVITATION = {"type": "object", "properties": _INVITATION_FIELDS}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "InvitationList": {"type": "object", "required": ["invitations", "next"], "properties": {
        "invitations": {"type": "array", "items": _INVITATION},
        "next": {"type": ["string", "null"], "description": "`after` of the following page; null at the end"}}},
    "SentInvitation": {"type": "object", "properties": {
        **_INVITATION_FIELDS, "token": {"type": "string"},
        "link": {"type": "string", "description": "BASE_URL/invite/<token>: shown once"},
        "seats": {"$ref": "#/components/schemas/Seats"},
        "mail": {"type": "object", "properties": {"id": {"type": ["string", "null"]}, "status": {
            "type": ["string", "null"], "enum": [*outbox.STATUSES, None]}}}}},
    "Outbox": {"type": "object", "required": ["mails", "next"], "properties": {
        "next": {"type": ["string", "null"]}, "mails": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "to": {"type": "string"},
            "subject": {"type": "string"}, "status": {"type": "string", "enum": list(outbox.STATUSES)},
            "attempts": {"type": "integer"}, "last_error": {"type": ["string", "null"]},
            "created": {"type": ["string", "null"]}, "sent": {"type": ["string", "null"]},
            "link": {"type": ["string", "null"], "description": "an undelivered invitation's link; never a "
                     "sign-in link"}}}}}},
}


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    done = {"description": "done"}
    paging = [LIMIT_QUERY, ("after", {"type": "string"}, "`next` of the previous page (opaque)")]
    status_query = [("status", {"type": "string", "enum": [str(s) for s in InvitationStatus]},
                     "only invitations of this status (as of now)")]
    capped = {"description": f"mail_cap_reached: the org has sent the address {outbox.MAIL_CAP} mails in 24 hours "
              "(`retry_after_seconds`, and Retry-After); nothing was written",
              "content": {"application/problem+json": {"schema": ref("Problem")}}}
    invite = op("Invite by email: the link is shown once, with the seat preview; the mail is sent over "
                "SMTP, or kept in the outbox", json_response(ref("SentInvitation")), body="NewInvitation",
                params=("org",), status="201")
    resend = op("Resend an invitation with a new link (the old link ends)",
                json_response(ref("SentInvitation")), params=("org", "invitation_id"))
    for operation in (invite, resend):
        operation["responses"]["429"] = capped
    return {
        "/api/v1/orgs/{org}/invitations": {
            "get": op("List invitations, newest first (an invitation past its time is expired)",
                      json_response(ref("InvitationList")), params=("org",), query=[*status_query, *paging]),
            "post": invite,
        },
        "/api/v1/orgs/{org}/invitations/{invitation_id}": {
            "delete": op("Revoke a pending invitation (its link ends, its undelivered mail is cancelled)", done,
                         params=("org", "invitation_id"), status="204")},
        "/api/v1/orgs/{org}/invitations/{invitation_id}/resend": {"post": resend},
        "/api/v1/invitations/accept": {"post": op("Accept an invitation with its link token",
                                                  json_response(ref("Member")), body="InvitationToken",
                                                  status="201", auth=False)},
        "/api/v1/invitations/decline": {"post": op("Decline an invitation", done, body="InvitationToken",
                                                   status="204", auth=False)},
        "/api/v1/orgs/{org}/outbox": {
            "get": op("The org's mails (keyset pages: ?limit=&after=); undelivered ones are retried",
                      json_response(ref("Outbox")), params=("org",), query=[
                          ("status", {"type": "string", "enum": list(outbox.STATUSES)}, "only mails of this status"),
                          LIMIT_QUERY,
                          ("after", {"type": "string"}, "`next` of the previous page")])},
    }
