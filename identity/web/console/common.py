"""What every console page shares: the signed-in caller, rendering, the form token, notices and errors.

How to add a page (e.g. identity/web/console/billing.py):

    from flask import Blueprint, g, request
    from identity import directory
    from identity.errors import DomainError
    from identity.web.console.common import console_page, form_errors, reading, redirect_with_notice, render, submit

    bp = Blueprint("console_billing", __name__, url_prefix="/console")

    @bp.get("/billing")
    @console_page
    def billing() -> Response:
        with reading() as session:
            seats = directory.seat_preview(session, g.actor, g.caller.org_id)
        return render("console/billing.html", title="Billing", nav="billing", seats=seats)

    @bp.post("/billing/cap")
    @console_page                      # a POST is refused (403 page) without the form's token
    def set_cap() -> Response:
        try:
            submit(orgs.update_settings, g.caller.org_id, {...})   # the domain decides and audits
        except DomainError as error:
            return render("console/billing.html", status=status_of(error), errors=form_errors(error), ...)
        return redirect_with_notice("/console/billing", "Seat cap saved.")

Register the blueprint in `PAGES` of identity/web/console/__init__.py (idp, billing and audit
are there already, as placeholders to fill in). A template extends "console/base.html" and fills
`{% block content %}` (`{% block title %}` defaults to the `title` given to `render`; `nav` marks
the current nav entry: teams, members, keys, idp, billing, audit). Form helpers:
`{% from "console/forms.html" import csrf_field, field_error, form_error, described with context %}`;
every form has `{{ csrf_field() }}`; an input takes `{{ described(errors, "email") }}` (aria-invalid
and aria-describedby when `errors.email` is set) and `{{ field_error(errors, "email") }}` right
after it; `{{ form_error(errors) }}` shows an error that belongs to no field (FORM_ERROR).
`may(action)` and `may(action, target_role)`, in a template and in Python, ask
identity.roles.refusal, so a page offers only what the caller's role may do; the domain service
refuses the rest anyway; a page that only asks before a change (a confirmation) calls
`require(action, target_role)` first, so it answers the refusal page to whom the change would be
refused. `dollars(cents)` ("$12.34") is there in templates too.

A list in pages keeps its position through its rows' forms: `page_position("after", "before")`
reads it from the link or the form, the forms carry it back as hidden fields, and redirects and
links use `page_link(path, here, **query)`. An error keyed to a row (`key-<id>`) goes through
`placed(errors, {"key-": shown ids})`: when that row is not on the page (an invitation no longer
pending, a key on another page) it is shown as the form's error instead of being dropped.
`typed(name)` and `typed_list(name, default, action)` give back what was posted.

A DomainError that a view does not catch becomes `refused_page` with the admin API's status
(403, 404, 409...), so a view catches only the errors it shows next to a field.

Conventions: `g.caller` is the admin API's Caller (org_id, org_slug, user_id, user_name, role,
team_id); `g.actor` its audit actor with this request's context. A page is `no-store`, and has
its own Content-Security-Policy: scripts and styles from /static only (identity/web/static/:
console.css, console.js, which gives `data-copy` copy buttons and `data-toggle` inline forms), no
inline script or style attribute. A notice after a POST travels in a short-lived signed cookie
(`redirect_with_notice`) and shows once, on the next page rendered (role="status").

Tests: tests/browser/axe.py (`check_page(page, name)`: axe, 0 serious or critical, then
`shoot(page, name)` into var/screenshots/), tests/browser/conftest.py (`console_site`: one
service, IdP and SMTP inbox per module and database; `ConsoleSite.sign_in_as(page, email)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

from flask import current_app, g, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from audit import Actor
from identity import sessions
from identity.errors import DomainError, PermissionDenied, Unauthenticated
from identity.roles import authorize, refusal
from identity.service import run
from identity.web import cookies
from identity.web.api.common import CSRF_PURPOSE, STATUS, Caller, csrf_token, request_actor, session_token
from identity.web.base_path import prefixed_html
from identity.web.context import cookie_path, database, secure_cookies
from saml import csrf

P = ParamSpec("P")
R = TypeVar("R")

SIGN_IN = "/"
FORM_ERROR = "_form"  # the key of an error that belongs to no one field
NOTICE_COOKIE = "console_notice"
NOTICE_SALT = "identity.console-notice"
NOTICE_MAX_AGE = 60  # seconds: a notice is for the page that follows its POST
PAGE_POLICY = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def signed_in_caller() -> Caller | None:
    """Return the caller of this browser's live session, or None when nobody is signed in."""
    token = session_token()
    if token is None:
        return None
    try:
        with database().transaction() as session:  # touches the session's last-seen time
            found = sessions.verify_session(session, token, cookies.lifetime(current_app.config))
    except Unauthenticated:
        return None
    return Caller.of_session(found)


def form_token_valid() -> bool:
    """Tell whether this POST comes from one of our pages: same origin, and the session's form token."""
    token = session_token()
    return csrf.same_origin(str(current_app.config["BASE_URL"]), request.headers) and csrf.valid(
        current_app.config["SECRET_KEY"], CSRF_PURPOSE, token, request.form.get(csrf.FIELD))


def console_page(view: Callable[P, Response]) -> Callable[P, Response]:
    """Make `view` a console page: signed in (else a redirect to the sign-in page), and for a POST
    the form's token checked first (else a 403 page; nothing is read or changed).

    Sets `g.caller` (identity.web.api.common.Caller) and `g.actor` (its audit actor, with this
    request's id, address and user agent).
    """
    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        if request.method not in SAFE_METHODS and not form_token_valid():
            return refused_page()
        caller = signed_in_caller()
        if caller is None:
            return redirect(SIGN_IN, 303)
        g.caller = caller
        g.actor = request_actor(caller.actor)
        try:
            return view(*args, **kwargs)
        except DomainError as error:  # one the view left to this net: a refusal page, never a 500
            return refused_page(error.message, status=status_of(error))
    return wrapper


def refused_page(message: str = "This form did not come from this console's own page, or the page is too old. "
                 "Open the page again and use its button.", *, status: int = 403) -> Response:
    """The page for a refused request: a form post without our token (a forged or stale form), or a
    domain error that no field of the page can show (`status` as the admin API would answer)."""
    return render("console/refused.html", status=status, title="Refused" if status == 403 else "Not possible",
                  message=message)


def form_page(path: str) -> str | None:
    """The page a form posting to `path` belongs to: the nearest path above it that a GET answers
    (/console/idp/mappings -> /console/idp, /console/teams/<id>/members -> /console/teams/<id>,
    which shows that team), None when there is none under /console."""
    urls = current_app.url_map.bind_to_environ(request.environ)
    parts = path.rstrip("/").split("/")
    for end in range(len(parts) - 1, 1, -1):
        candidate = "/".join(parts[:end])
        try:
            urls.match(candidate, method="GET")
        except HTTPException:  # no such page, POST only, or a redirect to add a slash
            continue
        return candidate
    return None


def http_error(error: HTTPException) -> Response | HTTPException:
    """A console URL's HTTP error: a GET of a form's address (the one a refused form was shown at,
    typed again, bookmarked or pasted) goes to the page that form belongs to, not to a bare 405;
    every other error is Werkzeug's own. For identity.web.app's `identity.error_formats`."""
    home = form_page(request.path) if error.code == 405 and request.method in ("GET", "HEAD") else None
    return redirect(home, 303) if home else error


def may(action: str, target_role: str | None = None) -> bool:
    """Tell whether the signed-in caller may do `action` (to a member of `target_role`): identity.roles.refusal."""
    actor = g.get("actor")
    caller = g.get("caller")
    if actor is None or caller is None:
        return False
    return refusal(actor, action, org_id=caller.org_id, target_role=target_role) is None


def require(action: str, target_role: str | None = None) -> None:
    """Refuse (PermissionDenied: the refusal page) unless the caller may do `action` (to a member of
    `target_role`): for a page that only asks before a change, as `may` decides what a list offers."""
    authorize(g.actor, action, org_id=g.caller.org_id, target_role=target_role)


def typed(name: str, default: Any = "", action: str | None = None) -> Any:
    """What the person typed in field `name` of the form just posted (to `action`, when several forms
    of the page share the name), so that a form that comes back with an error keeps it; else `default`
    (a form that succeeded, its page rendered at once (a new key's secret), starts afresh)."""
    if _refused_form() and name in request.form and (action is None or request.path == action):
        return request.form[name]
    return default


def typed_list(name: str, default: list[str], action: str) -> list[str]:
    """Every value of field `name` (checkboxes) of the form just refused at `action`, else `default`."""
    if _refused_form() and request.path == action:
        return request.form.getlist(name)
    return default


def posted(action: str, default: Any) -> Any:
    """The whole form just posted to `action` (its fields by name), else `default`: for a form built
    from a record (a mapping rule) that comes back with an error and must keep what was typed."""
    if _refused_form() and request.path == action:
        return request.form.to_dict()
    return default


def _refused_form() -> bool:
    """Whether the page being rendered answers a POST that was refused (`render`'s errors or status):
    only then does a form give back what was typed."""
    return request.method == "POST" and bool(g.get("form_refused"))


def render(template: str, *, status: int = 200, errors: dict[str, str] | None = None, **context: Any) -> Response:
    """Render a console template with the caller, the form token, `may`, errors and a pending notice."""
    caller = g.get("caller")
    token = session_token()
    notice = _take_notice()
    values: dict[str, Any] = {"caller": caller, "csrf_token": csrf_token(token) if token else "", "may": may,
                              "errors": errors or {}, "notice": notice, "dollars": dollars, "typed": typed,
                              "typed_list": typed_list, "posted": posted, "page_link": page_link}
    values.update(context)  # a page without a session (sign-in, invitation) passes its own csrf_token
    g.form_refused = bool(errors) or status >= 400
    html = prefixed_html(render_template(template, **values))  # our paths under BASE_URL's path
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    if notice is not None:
        response.delete_cookie(NOTICE_COOKIE, path=cookie_path("/"))
    return response


def dollars(cents: int) -> str:
    """Render integer cents as dollars: 1234 -> "$12.34" (money is never a float)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def redirect_with_notice(location: str, notice: str) -> Response:
    """Answer a POST with a 303 to `location`, whose page then shows `notice` once."""
    response = redirect(location, 303)
    value = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=NOTICE_SALT).dumps(notice)
    response.set_cookie(NOTICE_COOKIE, value, max_age=NOTICE_MAX_AGE, path=cookie_path("/"), httponly=True,
                        samesite="Lax", secure=secure_cookies())
    return response


def _take_notice() -> str | None:
    raw = request.cookies.get(NOTICE_COOKIE)
    if not raw:
        return None
    try:
        notice = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=NOTICE_SALT).loads(
            raw, max_age=NOTICE_MAX_AGE)
    except BadSignature:
        return None
    return notice if isinstance(notice, str) else None


def form_errors(error: DomainError, field: str | None = None) -> dict[str, str]:
    """Return a domain error as `{name: message}` for the page's error slots.

    A refusal (PermissionDenied) belongs to the whole form (FORM_ERROR), shown at the top of the
    page; any other error goes next to `field` when given (the form's own field, e.g. `name-<id>`),
    else next to the field the error names, else to FORM_ERROR.
    """
    named = error.context.get("field")
    if isinstance(error, PermissionDenied):
        return {FORM_ERROR: error.message}
    return {field or (named if isinstance(named, str) and named else FORM_ERROR): error.message}


def placed(errors: dict[str, str] | None, rows: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Return `errors` with each row-keyed one (`<prefix><row id>` for a prefix of `rows`) whose row the
    page does not show (an invitation no longer pending, a key on another page) moved to FORM_ERROR,
    so that no message is dropped. `rows` maps each prefix to the ids of the rows shown."""
    shown = {f"{prefix}{row}" for prefix, ids in rows.items() for row in ids}
    found: dict[str, str] = {}
    for name, message in (errors or {}).items():
        if name not in shown and name != FORM_ERROR and any(name.startswith(prefix) for prefix in rows):
            name = FORM_ERROR
        found[name] = f"{found[name]} {message}" if name in found else message
    return found


def page_position(*names: str) -> dict[str, str]:
    """Where in a paged list the request is: its `names` (after, before...) from the link's query or
    the fields a row's form carries back (empty when absent)."""
    return {name: str(request.values.get(name, "")) for name in names}


def page_link(path: str, here: Mapping[str, str], **query: str) -> str:
    """`path` with the list position `here` and `query` (empty values left out): a link back to the same page."""
    pairs = [(name, value) for name, value in {**here, **query}.items() if value]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain error on a page: the admin API's table (400 for the unlisted)."""
    return next((code for cls, code in STATUS.items() if isinstance(error, cls)), 400)


def submit(service: Callable[Concatenate[Session, Actor, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run one domain service as the caller, in one transaction (identity.service.run); errors propagate."""
    return run(database(), g.actor, service, *args, **kwargs)


@contextmanager
def reading() -> Iterator[Session]:
    """A read-only transaction on the app's database, for a page's reads."""
    with database().reading() as session:
        yield session


def field(name: str, default: str = "") -> str:
    """Return a form field, stripped (a missing field is `default`)."""
    return str(request.form.get(name, default)).strip()
