"""Who a SCIM request speaks for: a bearer SCIM token, or an OAuth 2.0 access token.

Access tokens come from `/oauth/token` (client credentials, RFC 6749 section 4.4, served with
authlib) as HS256 JWTs that live 60 minutes to 6 hours. They carry the client, and every use is
checked against the client's row, so revoking the client ends its tokens at once. Every refusal
there is section 5.2's JSON, including those authlib never sees (malformed parameters, unreadable
Basic credentials, NUL refused by identity.web.unstorable, a 405 or a 413).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidRequestError, grants
from flask import Flask, Response, current_app, g
from flask import request as http_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from audit import Actor, clock
from identity import config, scim_credentials
from identity.errors import Unauthenticated
from identity.jsontext import UNSTORABLE
from identity.models import ScimClient
from identity.service import run
from identity.web.http_errors import kept_headers
from scim.context import actor as request_actor
from scim.context import database

AUDIENCE = "scim"
P = ParamSpec("P")
R = TypeVar("R")


def token_lifetime() -> int:
    """Seconds an access token lives: `SCIM_TOKEN_TTL_SECONDS` (identity.config: 5 minutes to 6 hours)."""
    return config.scim_token_ttl_seconds()


def _key() -> OctKey:
    # A key of its own, derived from SECRET_KEY, so that no other use of SECRET_KEY can mint tokens.
    secret = hmac.new(current_app.config["SECRET_KEY"].encode(), b"scim-access-token", hashlib.sha256).digest()
    return OctKey.import_key(secret)


class _Client(ClientMixin):  # type: ignore[misc]
    """authlib's view of a client id a token request names: confidential, client credentials only.

    Whether the client exists is read once, with its secret (`check_client_secret`), never before:
    authlib's own answer to an unknown id (`_validate_client`, 400 "does not exist on this server")
    told a stranger which client ids exist. An unknown, revoked or wrongly authenticated client is
    one refusal, RFC 6749 5.2's 401 invalid_client, reached in about the same time (the secret is
    compared either way: scim_credentials.check_scim_client)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.found: ScimClient | None = None

    @property
    def row(self) -> ScimClient:
        """The client's row, once its secret has been checked."""
        assert self.found is not None, "the client's secret is checked before any token is made"
        return self.found

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return "scim"

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        with database().reading() as session:
            self.found = scim_credentials.check_scim_client(session, self.client_id, client_secret)
        return self.found is not None

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def _query_client(client_id: str) -> _Client:
    return _Client(client_id)


def _generate_token(grant_type: str, client: _Client, user: Any = None, scope: str | None = None,
                    expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
    now, lifetime = _now(), token_lifetime()
    claims = {"iss": current_app.config["BASE_URL"], "aud": AUDIENCE, "sub": client.row.client_id,
              "org": client.row.org_id, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    token = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, _key())
    return {"token_type": "Bearer", "access_token": token, "expires_in": lifetime, "scope": "scim"}


class _ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    # Entra ID posts the client's id and secret in the form body; other clients use Basic.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _record_issued(token: dict[str, Any], request: Any) -> None:
    """Audit each access token issued (the token itself is stateless and never stored or logged)."""
    with database().transaction() as session:
        scim_credentials.record_scim_client_token(
            session, request.client.row.client_id, expires_in=int(token["expires_in"]),
            request_id=g.get("request_id"), ip=http_request.remote_addr, user_agent=http_request.user_agent.string,
            client_request_id=g.get("client_request_id"))


def _malformed(parameters: MultiDict[str, str]) -> str | None:
    """Say why a token request's parameters (authlib reads the query and the form together) are
    malformed, or None: RFC 6749 section 3.2, "parameters sent without a value MUST be treated as
    if they were omitted from the request" and "MUST NOT be included more than once"; section 4.4.2,
    grant_type is REQUIRED. authlib took the first of a repeated grant_type and issued a token,
    and named a missing one unsupported_grant_type."""
    if any(len(values) > 1 for values in parameters.listvalues()):
        return "a parameter is included more than once"
    if not parameters.get("grant_type"):
        return "grant_type is missing"
    return None


def _two_client_authentications(header: str | None, parameters: MultiDict[str, str]) -> bool:
    """Whether a token request authenticates the client both by Basic and by a `client_secret`
    parameter: RFC 6749 section 2.3, "the client MUST NOT use more than one authentication method
    in each request" (5.2: invalid_request). authlib took the first that worked and issued a token.
    A `client_id` parameter beside Basic is not a second method: it authenticates nothing."""
    scheme = (header or "").split(None, 1)[0] if (header or "").strip() else ""
    return scheme.lower() == "basic" and "client_secret" in parameters


def _unreadable_basic(header: str | None) -> bool:
    """Whether `header` holds Basic credentials that authlib would fail on or pass to a query:
    not base64, not UTF-8 (authlib's UnicodeDecodeError was a 500), or NUL once its
    percent-escapes are undone (no PostgreSQL text holds it). Read as authlib reads them
    (authlib.oauth2.rfc6749.util.extract_basic_authorization)."""
    if not header or " " not in header:
        return False
    scheme, token = header.split(None, 1)
    if scheme.lower() != "basic":
        return False
    try:
        credentials = base64.b64decode(token).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return True
    return UNSTORABLE.search(unquote(credentials)) is not None


def _oauth_error(error: OAuth2Error) -> Response:
    """Answer `error` as authlib answers its own: RFC 6749 section 5.2's JSON, with its headers."""
    status, body, headers = error()
    return Response(json.dumps(body), status=status, headers=headers)


def _http_error(error: HTTPException) -> Response:
    """Answer an HTTP error at /oauth/token (a NUL refused by identity.web.unstorable, a 405, a
    413) in RFC 6749 section 5.2's JSON, as every other refusal there: a 4xx is invalid_request."""
    status = error.code or 500
    description = error.description or error.name
    response = _oauth_error(OAuth2Error(
        error="invalid_request" if status < 500 else "server_error", status_code=status,
        description=None if invalid_error_characters(description) else description))
    response.headers.update(kept_headers(error))
    return response


def init_oauth(app: Flask) -> None:
    """Serve the client-credentials token endpoint at /oauth/token on `app`."""
    server = AuthorizationServer(app, query_client=_query_client, save_token=_record_issued)
    server.register_grant(_ClientCredentials)
    server.register_token_generator("default", _generate_token)

    def token() -> Response:
        malformed = _malformed(http_request.values)
        if malformed is not None:
            return _oauth_error(InvalidRequestError(description=malformed))
        if _two_client_authentications(http_request.headers.get("Authorization"), http_request.values):
            return _oauth_error(InvalidRequestError(description="more than one client authentication method"))
        # RFC 6749 section 5.2: a client that fails to authenticate through the Authorization
        # header is a 401 invalid_client with WWW-Authenticate, whatever bytes it sent.
        if _unreadable_basic(http_request.headers.get("Authorization")):
            return _oauth_error(InvalidClientError(status_code=401, description="unreadable Basic credentials"))
        response: Response = server.create_token_response()
        return response

    app.add_url_rule("/oauth/token", "oauth_token", token, methods=["POST"])
    app.extensions["identity.error_formats"]["/oauth/token"] = _http_error


def run_write(service: Callable[Concatenate[Session, Actor, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a SCIM write as the request's actor in one transaction (identity.service.run), its credential
    confirmed unrevoked last in it (scim_credentials.confirm_credential): the check at the request's
    start read it before any lock the write then waited for."""
    def confirmed(session: Session, actor: Actor, /, *inner: P.args, **named: P.kwargs) -> R:
        result = service(session, actor, *inner, **named)
        scim_credentials.confirm_credential(session, actor)
        return result

    confirmed.__name__ = service.__name__  # run audits a refusal by the service's name
    return run(database(), request_actor(), confirmed, *args, **kwargs)


def authenticate(session: Any, header: str) -> scim_credentials.Presented:
    """Return the credential behind an `Authorization` header value, or raise Unauthenticated."""
    scheme, _, credential = (header or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("a bearer token is required")
    if credential.startswith("scim_"):
        return scim_credentials.verify_scim_token(session, credential)
    try:
        token = jwt.decode(credential, _key(), algorithms=["HS256"])
        # The library checks `exp` (and `iat`) by the service's clock, so that it and the rule
        # below agree whatever a test sets the clock to.
        jwt.JWTClaimsRegistry(now=_now, aud={"essential": True, "value": AUDIENCE},
                              exp={"essential": True}).validate(token.claims)
        expires_at = dt.datetime.fromtimestamp(token.claims["exp"], dt.UTC)
    except (JoseError, ValueError, OverflowError, OSError) as error:
        raise Unauthenticated("invalid or expired access token") from error
    if scim_credentials.access_token_ended(expires_at):
        raise Unauthenticated("invalid or expired access token")
    client = scim_credentials.check_scim_client(session, str(token.claims.get("sub")), None)
    if client is None or client.org_id != token.claims.get("org"):
        raise Unauthenticated("the access token's client is revoked")
    # The token's end goes with its actor: confirm_credential refuses a write it outlived (run_write).
    actor = dataclasses.replace(scim_credentials.scim_client_actor(client), expires_at=expires_at)
    return scim_credentials.Presented(actor)


def _now() -> int:
    """The service's clock (audit.clock) as a NumericDate, for the JWT library."""
    return int(clock.now().timestamp())
