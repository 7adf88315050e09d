"""A user's email addresses as SCIM shows them, and the `user_emails` rows kept from them.

The rule is one: the emails a user shows are the array the IdP sent, or else, when it sent none,
the primary email column as a primary work address. The SCIM renderer shows exactly this, and
`user_emails` holds exactly this, each address as its key (identity.names.name_key), so that a
filter such as Entra ID's `emails[type eq "work"].value eq "..."` finds its user through an index
at any org size, compared as a userName is.

The rows are kept at flush time from whatever changed `User.attributes` or `User.email`, so that
no service has to remember them (provisioning, which writes a new user with a plain INSERT that
no flush sees, writes its rows from `rows_for` too): they are an index, not domain state, and are not audited
(the change to the user that they follow is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Table, delete, event, insert, inspect
from sqlalchemy.orm import Session

from identity.models import User, UserEmail
from identity.names import name_key


def emails_of(attributes: Mapping[str, Any] | None, email: str | None) -> list[Any]:
    """Return the emails array a user shows (RFC 7643 section 4.1.2)."""
    sent = (attributes or {}).get("emails")
    if sent:
        return list(sent)
    return [{"value": email, "type": "work", "primary": True}] if email else []


def rows_for(org_id: str, user_id: str, attributes: Mapping[str, Any] | None,
             email: str | None) -> list[dict[str, Any]]:
    """Return the `user_emails` rows of one user, as plain dicts for an INSERT."""
    rows = []
    for item in emails_of(attributes, email):
        if not isinstance(item, Mapping) or not isinstance(item.get("value"), str) or not item["value"]:
            continue
        kind, display = item.get("type"), item.get("display")
        rows.append({"org_id": org_id, "user_id": user_id, "value": name_key(item["value"])[:320],
                     "type": kind[:64] if isinstance(kind, str) else None,
                     "primary": item.get("primary") is True or str(item.get("primary")).lower() == "true",
                     "display": display[:320] if isinstance(display, str) else None})
    return rows


EMAILS = cast(Table, UserEmail.__table__)
# For rows from `rows_for` of a user written with a plain INSERT, which no flush sees.
INSERT_ROWS = insert(EMAILS)


def _changed(user: User) -> bool:
    state = inspect(user)
    return bool(state.attrs.attributes.history.has_changes() or state.attrs.email.history.has_changes())


@event.listens_for(Session, "before_flush")
def _keep_email_rows(session: Session, _context: Any, _instances: Any) -> None:
    new = [u for u in session.new if isinstance(u, User)]
    changed = [u for u in session.dirty if isinstance(u, User) and _changed(u)]
    if changed:
        session.execute(delete(UserEmail).where(UserEmail.user_id.in_([u.id for u in changed])))
    for user in (*new, *changed):
        session.add_all(UserEmail(**row) for row in rows_for(user.org_id, user.id, user.attributes, user.email))
