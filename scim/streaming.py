"""A handler's result as the response; big groups' members streamed while it is sent.

A group's `members` stand in the body as `resources.MembersToStream` place-holders; the response
writes the JSON around them and reads each group's members 1,000 at a time, in the snapshot the
group was read in, so that memory stays flat whatever the size of the group.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

from flask import Response
from sqlalchemy.orm import Session

from scim import context, listing, resources
from scim.context import Result

SCIM_JSON = "application/scim+json"


def respond(result: Result) -> Response:
    """Render a handler's (status, body, headers) as a SCIM JSON response."""
    status, body, headers = result
    streams: list[resources.MembersToStream] = []
    nonce = secrets.token_hex(8)  # so that no attribute a client stored can pass for a place-holder

    def place_holder(value: Any) -> str:
        if not isinstance(value, resources.MembersToStream):
            raise TypeError(f"{type(value).__name__} is not JSON")
        streams.append(value)
        return f"\x00{nonce}:{len(streams) - 1}\x00"

    text = "" if body is None else json.dumps(body, default=place_holder)
    if streams:
        pieces = []
        for index in range(len(streams)):
            before, _, text = text.partition(json.dumps(f"\x00{nonce}:{index}\x00"))
            pieces.append(before)
        pieces.append(text)
        # The stream takes over the request's read transaction: the members are read in the snapshot
        # the group was read in, and the transaction ends when the server closes the response
        # (after the last byte, or when the client went away), not at the request's teardown,
        # which runs before the first byte is sent.
        stack, session = context.take_shared_read()
        response = Response(_streamed(pieces, streams, session, context.base_url()), status=status,
                            content_type=SCIM_JSON)
        response.call_on_close(stack.close)
    else:
        response = Response(text, status=status, content_type=SCIM_JSON if body is not None else None)
    response.headers.update(headers)
    return response


def _streamed(pieces: list[str], streams: list[resources.MembersToStream], session: Session,
              base: str) -> Iterator[bytes]:
    """The body around each group's members, and the members read and written 1,000 at a time,
    in the request's read transaction: memory stays flat whatever the size of the group."""
    for piece, members in zip(pieces, [*streams, None], strict=True):
        yield piece.encode()
        if members is None:
            continue
        separator = ""
        yield b"["
        for chunk in listing.iter_members(session, members.group_id):
            yield (separator + resources.members_json(chunk, base)).encode()
            separator = ", "
        yield b"]"


def members_for(session: Session, group_ids: list[str]) -> dict[str, Any]:
    """Each group's members: to be streamed when the response is sent in the request's own read
    transaction (a GET), else read now (a write's answer, /Bulk, a POST /.search)."""
    if context.has_shared_read():
        return {gid: resources.MembersToStream(gid) for gid in group_ids}
    return listing.members_of(session, group_ids)
