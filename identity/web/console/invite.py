"""Console page: the invite dialog (LLM Gateway's): email, role and team, with the seats included,
used and left and the prorated cost of the next seat shown before anything is sent.

Without JavaScript, "Review" posts to a preview step (nothing changes) whose button sends the
invitation; with it, the seat panel follows the seats as they stand (`seats.json`) and the dialog
can send at once. Sending is members.invite_member (the admin API's service); its mail goes out at
once when SMTP is configured.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from werkzeug.wrappers import Response

from identity import directory, invitations, members
from identity.directory import TeamEntry
from identity.errors import DomainError, PermissionDenied
from identity.seats import SeatPreview
from identity.vocabulary import Role
from identity.web.api.invitations import base_url, send_invitation_mail
from identity.web.console.common import (
    console_page,
    dollars,
    field,
    form_errors,
    may,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_invite", __name__, url_prefix="/console")
PAGE = "/console/members/invite"


def seat_figures(preview: SeatPreview) -> dict[str, str]:
    """What the dialog's seat panel shows, by slot: the seats now, the seat cap, and what one more
    invitation costs, or that it could not be accepted (every number is identity.seats.preview's)."""
    left = preview.free_after_invitations
    return {"included": str(preview.included + preview.purchased), "used": str(preview.used),
            "pending": str(preview.pending_invitations), "left": str(left),
            "left_after": str(max(0, left - 1)), "next_seat": dollars(preview.next_invitation_cents),
            "cycle_end": preview.cycle_end.strftime("%Y-%m-%d"),
            "cap": ("no cap" if preview.max_seats is None else
                    f"{preview.max_seats} seats, {preview.cap_left} left after pending invitations"),
            "cost_note": _cost_note(preview)}


def _cost_note(preview: SeatPreview) -> str:
    if preview.cap_left == 0:  # accepting is refused at the cap (identity.seats.take_seat): say so, promise nothing
        return (f"The seat cap of {preview.max_seats} is reached ({preview.used} used, "
                f"{preview.pending_invitations} pending invitations): an invitation sent now cannot be accepted "
                "until a seat is freed or an owner raises the cap on the billing page.")
    if preview.free_after_invitations:
        return "This invitation takes an included or already paid seat: no charge."
    return (f"Accepting adds a seat: {dollars(preview.next_invitation_cents)} now, prorated for the rest of this "
            f"cycle (until {preview.cycle_end:%Y-%m-%d}), then {dollars(preview.seat_price_cents)} a month.")


def _invitable_roles() -> list[str]:
    return [r for r in (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)
            if may("owners.manage" if r == Role.OWNER else "members.manage")]


def _dialog(template: str, *, status: int = 200, errors: dict[str, str] | None = None,
            team: TeamEntry | None = None, **values: Any) -> Response:
    """The dialog (or its review step, `team` the team found for what was typed), with the seats now.

    The team is typed by name or id (no list of every team of the org in the form); the caller's
    own teams are suggested, read by their grants. A team the query gives by id (a team's page's
    invite link, the review step's "Change") is shown by its name, as a person types and reads it."""
    # The form's fields, or (the review step's "Change" link) the query's: back to the dialog as chosen.
    typed_team = field("team_id") or request.args.get("team_id", "")
    with reading() as session:
        preview = directory.seat_preview(session, g.actor, g.caller.org_id)
        mine = directory.get_member(session, g.actor, g.caller.org_id, g.caller.user_id).teams
        names = directory.team_names(session, g.actor, g.caller.org_id, [*mine, *filter(None, [g.caller.team_id])])
        asked = {} if field("team_id") or not typed_team else directory.team_names(
            session, g.actor, g.caller.org_id, [typed_team])
    typed_team = asked.get(typed_team, typed_team)
    chosen = {"email": field("email") or request.args.get("email", ""),
              "role": field("role") or request.args.get("role", "") or Role.MEMBER,
              "team_id": team.id if team else typed_team or names.get(g.caller.team_id or "", ""),
              "team_name": team.name if team else ""}
    return render(template, status=status, errors=errors, title="Invite member", nav="members", seats=preview,
                  figures=seat_figures(preview), my_teams=sorted(names.values()), roles=_invitable_roles(),
                  chosen=chosen, **values)


def _typed_team() -> TeamEntry | None:
    """The team typed into the dialog, by name or id (NotFound next to the field); None: the domain's default."""
    if not field("team_id"):
        return None
    with reading() as session:
        return directory.find_team(session, g.actor, g.caller.org_id, field("team_id"))


@bp.get("/members/invite")
@console_page
def invite_page() -> Response:
    """The dialog: the form, and the seats as they stand."""
    return _dialog("console/invite.html")


@bp.get("/members/seats.json")
@console_page
def seats_now() -> Response:
    """The seat panel's figures now (the dialog's script refreshes them while it is open)."""
    with reading() as session:
        preview = directory.seat_preview(session, g.actor, g.caller.org_id)
    response = jsonify(seat_figures(preview))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/members/invite/preview")
@console_page
def preview_invitation() -> Response:
    """The step before sending (without JavaScript): what the invitation is and what it costs; nothing changes.

    The domain refuses here what Send would refuse about the person (invitations.check_invitation:
    the address, a member already, an invitation pending), next to the field, before any seat is shown."""
    if not field("email"):
        return _dialog("console/invite.html", status=400, errors={"email": "Enter the email address to invite."})
    try:
        with reading() as session:
            invitations.check_invitation(session, g.actor, g.caller.org_id, email=field("email"),
                                         role=field("role") or Role.MEMBER)
        team = _typed_team()
    except PermissionDenied:
        raise  # the refusal page (console_page), as Send answers it
    except DomainError as error:
        return _dialog("console/invite.html", status=status_of(error), errors=form_errors(error))
    return _dialog("console/invite_confirm.html", team=team)


@bp.post("/members/invite")
@console_page
def send_invitation() -> Response:
    """Invite: the invitation and its mail in one transaction, then the mail sent."""
    try:
        team = _typed_team()
        invited = submit(members.invite_member, g.caller.org_id, email=field("email"),
                         role=field("role") or Role.MEMBER, team_id=team.id if team else None, base_url=base_url())
    except PermissionDenied:
        raise  # the refusal page (console_page), not a dialog this caller may not see
    except DomainError as error:
        return _dialog("console/invite.html", status=status_of(error), errors=form_errors(error))
    _, state = send_invitation_mail(g.actor, invited.invitation.id)
    mailed = "mailed" if state == "sent" else "queued in the outbox"
    return redirect_with_notice("/console/members#invitations",
                                f"Invitation to {invited.invitation.email} {mailed}.")
