"""Text no database here stores, refused at the door of every route (non-negotiable 4).

NUL and unpaired UTF-16 surrogates (identity.jsontext.UNSTORABLE) in a path, a query string or a
form field: PostgreSQL text cannot hold NUL, and neither psycopg nor sqlite3 encodes a lone
surrogate, so each one reaching a query was a 500 on one database or both (the console, the
sign-in forms, SAML's org slug, SCIM's resource ids), or was stored on SQLite. Checked once, for
every request, before any view or blueprint reads anything: a 400 in each protocol's own format
(problem JSON `invalid_value` under /api/, a SCIM error under /scim/v2, OAuth's `invalid_request`
at /oauth/token, an HTML page elsewhere).
JSON bodies are checked where each protocol reads them (identity.web.api.common.json_body,
scim.resources), with the same definition.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest

from identity.jsontext import UNSTORABLE

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class UnstorableText(BadRequest):
    """A 400 for NUL or a lone surrogate in a path, query or form; the protocols' renderers read
    `problem_code` (the admin API's) and `scim_type` (SCIM's)."""

    problem_code = "invalid_value"
    scim_type = "invalidValue"
    description = "the path, query string and form fields must not contain NUL characters or unpaired surrogates"


def refuse_unstorable() -> None:
    """Raise UnstorableText when the request's path arguments, query or form hold an UNSTORABLE character."""
    texts = [*(value for value in (request.view_args or {}).values() if isinstance(value, str)),
             *request.args.keys(), *(v for values in request.args.listvalues() for v in values)]
    if request.method == "POST" and request.mimetype in FORMS:
        texts += [*request.form.keys(), *(v for values in request.form.listvalues() for v in values)]
    if any(UNSTORABLE.search(text) for text in texts):
        raise UnstorableText()
