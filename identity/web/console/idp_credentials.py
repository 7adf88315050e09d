"""The identity provider page's SCIM credentials: bearer tokens and OAuth clients, made (owners;
the secret shown once, on the page that answers the form) and revoked (owners and admins), by
identity.scim_credentials, which decides and audits as it does for the admin API.

Each rendering of the page gives its create forms a one-time nonce, the new credential's id: the
browser's reload of the page that shows a secret sends the form again, and that second sending makes
no second credential: it goes back to the list (303) with a notice that the credential exists and its
secret cannot be shown again (identity.made_once.AlreadyMade). The secret stays in that one answer: never
in a redirect, a cookie or a URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, g
from werkzeug.wrappers import Response

from identity import scim_credentials
from identity.errors import DomainError
from identity.keys import Issued
from identity.made_once import AlreadyMade
from identity.web.console.common import console_page, field, redirect_with_notice, submit
from identity.web.console.idp import Outcome, change, idp_view, refused

bp = Blueprint("console_idp_credentials", __name__, url_prefix="/console")
NAME_LENGTH = 200


@dataclass(frozen=True)
class Kind:
    """A kind of SCIM credential: its services, the name it gets when none is given, what the page says."""

    issued: str  # token, client
    create: Callable[..., Issued]
    revoke: Callable[..., None]
    default_name: str
    revoked: str


KINDS = {
    "scim-tokens": Kind("token", scim_credentials.create_scim_token, scim_credentials.revoke_scim_token, "SCIM",
                        "SCIM token revoked."),
    "scim-clients": Kind("client", scim_credentials.create_scim_client, scim_credentials.revoke_scim_client,
                         "SCIM client", "OAuth client revoked."),
}
ROUTE = "/idp/<any('scim-tokens', 'scim-clients'):kind>"


@bp.post(ROUTE)
@console_page
def create_credential(kind: str) -> Response:
    """Make a SCIM bearer token or OAuth client and show its secret once."""
    made = KINDS[kind]
    name = field("name")[:NAME_LENGTH] or made.default_name
    try:
        issued = submit(made.create, g.caller.org_id, name=name, made_as=field("nonce") or None)
    except AlreadyMade as again:  # a reload of the page that showed the secret
        return redirect_with_notice("/console/idp#scim", again.message)
    except DomainError as error:
        return refused(error, f"scim_{made.issued}")
    return idp_view(issued={"kind": made.issued, "name": name, "prefix": issued.prefix, "secret": issued.secret})


@bp.post(ROUTE + "/<credential_id>/revoke")
@console_page
def revoke_credential(kind: str, credential_id: str) -> Response:
    """Revoke a token or client: the IdP's next request with it is refused."""
    made = KINDS[kind]
    return change(Outcome(f"scim_{made.issued}s", "#scim", made.revoked), made.revoke, g.caller.org_id, credential_id)
