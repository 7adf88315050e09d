"""The identity provider page's SCIM credentials: bearer tokens and OAuth clients, made (owners;
the secret shown once, on the page that answers the form) and revoked (owners and admins), by
identity.scim_credentials, which decides and audits as it does for the admin API.
"""

from __future__ import annotations

from flask import Blueprint, g
from werkzeug.wrappers import Response

from identity import scim_credentials
from identity.errors import DomainError
from identity.web.console.common import console_page, field, redirect_with_notice, submit
from identity.web.console.idp import PAGE, idp_view, refused

bp = Blueprint("console_idp_credentials", __name__, url_prefix="/console")
NAME_LENGTH = 200


@bp.post("/idp/scim-tokens")
@console_page
def create_token() -> Response:
    """Make a SCIM bearer token and show it once."""
    name = field("name")[:NAME_LENGTH] or "SCIM"
    try:
        issued = submit(scim_credentials.create_scim_token, g.caller.org_id, name=name)
    except DomainError as error:
        return refused(error, "scim_token")
    return idp_view(issued={"kind": "token", "name": name, "prefix": issued.prefix, "secret": issued.secret})


@bp.post("/idp/scim-tokens/<token_id>/revoke")
@console_page
def revoke_token(token_id: str) -> Response:
    """Revoke a SCIM token: the IdP's next request with it is refused."""
    try:
        submit(scim_credentials.revoke_scim_token, g.caller.org_id, token_id)
    except DomainError as error:
        return refused(error, "scim_tokens")
    return redirect_with_notice(PAGE + "#scim", "SCIM token revoked.")


@bp.post("/idp/scim-clients")
@console_page
def create_client() -> Response:
    """Make an OAuth client-credentials client for SCIM and show its secret once."""
    name = field("name")[:NAME_LENGTH] or "SCIM client"
    try:
        issued = submit(scim_credentials.create_scim_client, g.caller.org_id, name=name)
    except DomainError as error:
        return refused(error, "scim_client")
    return idp_view(issued={"kind": "client", "name": name, "prefix": issued.prefix, "secret": issued.secret})


@bp.post("/idp/scim-clients/<client_id>/revoke")
@console_page
def revoke_client(client_id: str) -> Response:
    """Revoke an OAuth client: its access tokens stop working at once."""
    try:
        submit(scim_credentials.revoke_scim_client, g.caller.org_id, client_id)
    except DomainError as error:
        return refused(error, "scim_clients")
    return redirect_with_notice(PAGE + "#scim", "OAuth client revoked.")
