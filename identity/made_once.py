"""A secret-bearing row made once per form: the console's forms that make a credential (a SCIM token,
an OAuth client, an API key) carry a one-time nonce, drawn each time the page is drawn, which becomes
the new row's id. The browser's reload of the page that showed the secret sends the same form again;
that second sending is refused (Conflict) instead of making a second credential whose secret nobody
saw. That refusal is AlreadyMade, which names the row, so a console page can answer it kindly (the
list, with a notice) rather than as an error. The callers hold the org's lock (identity.seats.lock_org)
when they ask, so two sendings at once see each other.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from identity.errors import Conflict, InvalidValue


class AlreadyMade(Conflict):
    """A form sent again whose credential exists: `made_id` is that row's id (the form's nonce)."""

    def __init__(self, what: str, made_id: str) -> None:
        super().__init__(f"This {what} was already created; its secret was shown once and cannot be shown again.",
                         made_id=made_id)
        self.made_id = made_id


def new_id(session: Session, model: type[Any], org_id: str, made_as: str | None, what: str) -> str:
    """The new row's id: a fresh one, or `made_as`, the form's nonce, refused when a row of this org has
    it already (AlreadyMade). A row of another org with that id (a nonce typed by hand to probe for it) is no
    refusal, which would tell that it exists: the new row takes a fresh id instead."""
    if made_as is None:
        return str(uuid.uuid4())
    try:
        wanted = str(uuid.UUID(made_as))
    except ValueError:
        raise InvalidValue("this form is out of date: load the page again") from None
    found = session.get(model, wanted)
    if found is not None and found.org_id != org_id:
        return str(uuid.uuid4())
    if found is not None:
        raise AlreadyMade(what, wanted)
    return wanted
