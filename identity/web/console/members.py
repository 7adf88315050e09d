"""Console page: Members: each with role, teams, active state and source; change role, deactivate or
reactivate, remove, transfer ownership (owner), the IdP identity that signs in as a member (unlinked
by an owner), and the pending invitations (resend, revoke).

A control is offered only when identity.roles.refusal allows it for that member's role (`may`),
and every change is one domain service that asks the same function again.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, g
from werkzeug.wrappers import Response

from identity import directory, invitations, members, org_lifecycle, users
from identity.directory import Member
from identity.errors import DomainError
from identity.models import User
from identity.vocabulary import Role
from identity.web.api.invitations import base_url, send_invitation_mail
from identity.web.console.common import (
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
    require,
    status_of,
    submit,
)
from saml import identities

bp = Blueprint("console_members", __name__, url_prefix="/console")
PAGE = "/console/members"
SHOWN = 100  # members on a page; the page links to the next and the previous one
ROLES = (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)


def assignable_roles(target_role: str | None) -> list[str]:
    """The roles the caller may give a member who holds `target_role` now (owner only for owners)."""
    if not may("member.change_role", target_role):
        return []
    return [role for role in ROLES if role != Role.OWNER or may("owners.manage")]


def _page(*, status: int = 200, errors: dict[str, str] | None = None) -> Response:
    """A page of members (`?after=<id>` or `?before=<id>`: keyset pages, as the admin API's), the names
    of their teams only, and the pending invitations for those who manage members."""
    here = _where()
    after, before = here["after"], here["before"]
    with reading() as session:
        people = directory.list_members(session, g.actor, g.caller.org_id, limit=SHOWN, after=after, before=before)
        pending = (directory.list_invitations(session, g.actor, g.caller.org_id, status="pending")
                   if may("members.manage") else [])
        names = directory.team_names(session, g.actor, g.caller.org_id, [
            *(team_id for member in people.members for team_id in member.teams),
            *(i.team_id for i in pending if i.team_id)])
    errors = placed(errors, {"member-": [m.id for m in people.members], "invitation-": [i.id for i in pending]})
    return render("console/members.html", status=status, errors=errors, title="Members", nav="members",
                  members=people.members, next_page=people.next, previous_page=people.previous, team_names=names,
                  invitations=pending, assignable_roles=assignable_roles, here=here)


def _where() -> dict[str, str]:
    """Which page of members: the link's `after`/`before`, or the same fields a row's form carries back."""
    return page_position("after", "before")


def _back_to(anchor: str) -> str:
    """The page of members the form was posted from, at `anchor` (a member's row, the invitations)."""
    return f"{page_link(PAGE, _where())}#{anchor}"


@bp.get("/members")
@console_page
def members_page() -> Response:
    """List the org's members and, for those who manage members, the pending invitations."""
    return _page()


def _member_refused(user_id: str, error: DomainError) -> Response:
    return _page(status=status_of(error), errors=form_errors(error, f"member-{user_id}"))


@bp.post("/members/<user_id>/role")
@console_page
def change_role(user_id: str) -> Response:
    try:
        member = submit(members.change_member, g.caller.org_id, user_id, role=field("role"), active=None)
    except DomainError as error:
        return _member_refused(user_id, error)
    return redirect_with_notice(_back_to(f"member-{user_id}"), f"{member.user_name} is now {member.role}.")


@bp.post("/members/<user_id>/active")
@console_page
def change_active(user_id: str) -> Response:
    """Deactivate (`active=false`) or reactivate (`active=true`) a member."""
    active = field("active") == "true"
    try:
        member = submit(members.change_member, g.caller.org_id, user_id, role=None, active=active)
    except DomainError as error:
        return _member_refused(user_id, error)
    done = "reactivated" if active else "deactivated"
    return redirect_with_notice(_back_to(f"member-{user_id}"), f"{member.user_name} {done}.")


# The changes that a page asks about first: action -> (service, the notice after it).
# remove: memberships and keys go, the seat is freed, the user stays as a tombstone;
# transfer: the member becomes the owner and the caller an admin, in one transaction.
CONFIRMED: dict[str, tuple[Callable[..., User], str]] = {
    "remove": (users.delete_user, "{} removed."),
    "transfer": (org_lifecycle.transfer_ownership, "{} is now the owner; you are an admin."),
}


@bp.get("/members/<user_id>/<any(remove, transfer):action>")
@console_page
def confirm_page(user_id: str, action: str) -> Response:
    """The page that asks before a removal or an ownership transfer."""
    try:
        with reading() as session:
            member: Member = directory.get_member(session, g.actor, g.caller.org_id, user_id)
    except DomainError as error:
        return _member_refused(user_id, error)
    # Asked as the list asks before it offers the link: else the refusal page, and no danger button
    if action == "remove":
        require("member.delete", member.role)
    else:
        require("org.transfer_ownership")
    return render("console/member_confirm.html", title="Confirm", nav="members", member=member, action=action,
                  here=_where())


@bp.post("/members/<user_id>/<any(remove, transfer):action>")
@console_page
def confirmed_change(user_id: str, action: str) -> Response:
    """Remove the member, or make them the owner (CONFIRMED)."""
    service, notice = CONFIRMED[action]
    try:
        user = submit(service, g.caller.org_id, user_id)
    except DomainError as error:
        return _member_refused(user_id, error)
    return redirect_with_notice(page_link(PAGE, _where()), notice.format(user.user_name))


@bp.get("/members/<user_id>/sso")
@console_page
def sso_identity_page(user_id: str) -> Response:
    """The IdP identities (persistent NameIDs) linked to a member, and for an owner the unlink button."""
    try:
        with reading() as session:
            member: Member = directory.get_member(session, g.actor, g.caller.org_id, user_id)
            links = identities.linked_identities(session, g.actor, g.caller.org_id, user_id)
    except DomainError as error:
        return _member_refused(user_id, error)
    return render("console/member_sso.html", title="SSO identity", nav="members", member=member, links=links)


@bp.post("/members/<user_id>/sso")
@console_page
def unlink_sso_identity(user_id: str) -> Response:
    """Unlink the member from its IdP identities: their sessions end, their next sign-in links anew."""
    try:
        unlinked = submit(identities.unlink_identities, g.caller.org_id, user_id)
        with reading() as session:
            member = directory.get_member(session, g.actor, g.caller.org_id, user_id)
    except DomainError as error:
        return _member_refused(user_id, error)
    return redirect_with_notice(f"{PAGE}#member-{user_id}", f"{member.email or member.user_name} unlinked from "
                                f"{len(unlinked)} IdP identit{'y' if len(unlinked) == 1 else 'ies'}; their next "
                                "sign-in links anew.")


@bp.post("/members/invitations/<invitation_id>/resend")
@console_page
def resend_invitation(invitation_id: str) -> Response:
    """Resend with a new link (the old one ends); the mail goes out now when SMTP is configured."""
    try:
        invited = submit(members.resend_invitation, g.caller.org_id, invitation_id, base_url=base_url())
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"invitation-{invitation_id}"))
    send_invitation_mail(g.actor, invited.invitation.id)
    return redirect_with_notice(_back_to("invitations"), f"Invitation to {invited.invitation.email} sent again.")


@bp.post("/members/invitations/<invitation_id>/revoke")
@console_page
def revoke_invitation(invitation_id: str) -> Response:
    try:
        submit(invitations.revoke, g.caller.org_id, invitation_id)
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"invitation-{invitation_id}"))
    return redirect_with_notice(_back_to("invitations"), "Invitation revoked.")
