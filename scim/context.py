"""What every SCIM handler reads from the request it runs in: the database, the actor, the
request's read transaction, the body and its `If-Match` / `If-None-Match`; and `Result`, what a handler returns.

Handlers are plain functions of (parameters, body) returning a `Result`, so that /Bulk runs
exactly the code each route runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from flask import current_app, g, request
from sqlalchemy.orm import Session

from audit import Actor
from identity import jsontext
from identity.web.context import database as database  # the one accessor of the app's database
from scim import errors, resources

Result = tuple[int, dict[str, Any] | None, dict[str, str]]


def base_url() -> str:
    """Return the SCIM base URL, from BASE_URL, never from the Host header."""
    return base_url_of(current_app.config)


def base_url_of(config: Mapping[str, Any]) -> str:
    """The SCIM base URL of an app's configuration."""
    return f"{config['BASE_URL']}/scim/v2"


def act_as(who: Actor) -> None:
    """Make `who` the request's actor (the blueprint's authentication hook does)."""
    g.scim_actor = who


def actor() -> Actor:
    """Return who the request speaks for (set by the blueprint's authentication hook)."""
    found: Actor = g.scim_actor
    return found


def org_id() -> str:
    """Return the id of the org the request's credential belongs to."""
    return actor().org_id or ""


def share_read(stack: ExitStack, session: Session) -> None:
    """Keep the authentication's read transaction for the handler of a GET (`reading`)."""
    g.scim_read = (stack, session)


def has_shared_read() -> bool:
    """Tell whether the request holds a read transaction the response may still use (a GET)."""
    return g.get("scim_read") is not None


def take_shared_read() -> tuple[ExitStack, Session]:
    """Hand the request's read transaction over to the response, which ends it when sent."""
    shared: tuple[ExitStack, Session] = g.pop("scim_read")
    return shared


def end_shared_read() -> None:
    """End the request's read transaction, unless the response took it over."""
    shared = g.pop("scim_read", None)
    if shared is not None:
        shared[0].close()


@contextmanager
def reading() -> Iterator[Session]:
    """The request's read transaction when it has one (GET), else a new one."""
    shared = g.get("scim_read")
    if shared is not None:
        yield shared[1]
        return
    with database().reading() as session:
        yield session


def body() -> Any:
    """Return the request's JSON body (None when empty), or raise InvalidSyntax."""
    raw = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and len(raw) >= limit and request.content_length is None:
        # A chunked body has no Content-Length to be refused by: werkzeug stops reading at the limit
        # and raises 413 only on the next read, which is this one (else: truncated JSON, a 400).
        request.stream.read(1)
    try:
        return jsontext.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.InvalidSyntax(f"the body is not valid JSON: {error}") from None


def search_body() -> dict[str, Any]:
    """Return the body of a POST /.search (RFC 7644 section 3.4.3), which is a JSON object."""
    found = body()
    if not isinstance(found, dict):
        raise errors.InvalidSyntax("a search body is a JSON object")
    return found


def check_if_match(version: int | str | Callable[[], str]) -> None:
    """Honour If-Match (RFC 7644 section 3.14): a stale version is 412, changing nothing.

    `version` may be a function, called only when the client sent If-Match (a user's version
    reads its groups)."""
    # In a Bulk request, the operation's own `version` (scim.bulk), never the request's header.
    wanted = g.bulk_if_match if "bulk_if_match" in g else request.headers.get("If-Match")
    if not wanted:
        return
    if callable(version):
        version = version()
    tags = {tag.strip() for tag in wanted.split(",")}
    if not tags & {"*", resources.etag(version), f'"{version}"'}:
        raise errors.PreconditionFailed(f"the resource is at version {resources.etag(version)}")


def not_modified(version: int | str) -> Result | None:
    """Answer a GET whose If-None-Match names the current version with 304 and no body (RFC 7644
    section 3.14, RFC 9110 section 13.1.2: weak comparison, `*` matches any current version)."""
    wanted = request.headers.get("If-None-Match")
    if request.method != "GET" or not wanted:
        return None
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    if tags & {"*", f'"{version}"'}:
        return 304, None, {"ETag": resources.etag(version)}
    return None
