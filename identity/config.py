"""Configuration from environment variables (DESIGN.md section 7). Secrets are never logged."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from audit import signing
from identity import secret_key_file

DEFAULT_DATA_DIR = Path("var")
MAX_BODY_BYTES = 1024 * 1024  # documented in the README; larger bodies get 413
MAX_SESSION_ABSOLUTE_HOURS = 24 * 366  # a year


def data_dir() -> Path:
    """Return the folder of the embedded default's files (`IDENTITY_DATA_DIR`, default ./var)."""
    return Path(os.environ.get("IDENTITY_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def make_private_dir(path: Path) -> None:
    """Create the folder `path` and any missing parents readable by this service's user alone (0700).

    A folder that exists already is left as it is: it may be shared (`/tmp`), and it is the files'
    own modes (0600) that keep them private.
    """
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it first
            pass


def create_private_file(path: Path) -> bool:
    """Create the empty file `path` readable and writable by this service's user alone (0600),
    unless it exists; tell whether it was created."""
    make_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


# The URL schemes of the drivers installed with the service (psycopg 3, Python's own sqlite3):
# SQLAlchemy takes any `backend+driver` and fails only at the first connection, with a traceback
# (postgresql+psycopg2:// is ModuleNotFoundError), so any other driver is refused here, at start.
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg")


def database_url() -> str:
    """Return `DATABASE_URL`, or the embedded SQLite file in the data folder.

    One that is not a SQLite or PostgreSQL URL of an installed driver (DATABASE_SCHEMES) is a
    ValueError naming the setting, never showing the value (it may hold a password): SQLAlchemy's
    own errors (`invalid literal for int()` for a port with a typo, a missing driver's module) say
    neither which setting nor what is expected. So is a password with a raw '@': the URL parser and
    the driver take what follows it for the host, and print it (part of the password)."""
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir() / 'identity.db'}"
    try:
        scheme = make_url(url).drivername
    except (ArgumentError, ValueError):
        scheme = None
    if scheme not in DATABASE_SCHEMES:
        raise ValueError("DATABASE_URL must be sqlite:///PATH or postgresql://[user[:password]@]host[:port]/database "
                         "(user and password URL-encoded, the port a number); the drivers installed are psycopg 3 "
                         "(postgresql://, postgres:// or postgresql+psycopg://) and sqlite3 (sqlite://), no other "
                         "(not postgresql+psycopg2 nor +pg8000)")
    if urlsplit(url).netloc.count("@") > 1:
        raise ValueError("DATABASE_URL has more than one '@' before its host: percent-encode the user and password "
                         "('@' is %40, ':' %3A, '/' %2F); a raw '@' makes what follows it read as the host, and shown")
    return url


MIN_SECRET_KEY_CHARS = 32


def secret_key() -> str:
    """Return `SECRET_KEY`; for the embedded default, one generated once and kept in the data folder.

    A key shorter than MIN_SECRET_KEY_CHARS stops the service at start (a ValueError naming the
    setting, never the value): the key signs the SCIM access tokens and the form tokens and seals
    the SP private keys, and every anonymous visitor of the sign-in page receives an HMAC under it
    with its input, so a guessable key ("changeme") is checked offline, and then forges an access
    token for any org's SCIM. The generated key has 64 characters (384 random bits)."""
    key = os.environ.get("SECRET_KEY") or _generated_secret_key()
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters of random, such as "
                         "python -c 'import secrets; print(secrets.token_urlsafe(48))' prints")
    return key


def _generated_secret_key() -> str:
    """Return the key kept in the data folder, generated at its first use (identity.secret_key_file)."""
    path = data_dir() / "secret_key"
    if not path.exists():
        make_private_dir(path.parent)
        secret_key_file.make(path)
    return secret_key_file.read(path)


DEFAULT_AUDIT_RETENTION_FLOOR_DAYS = 90


def audit_retention_floor_days() -> int:
    """Return `AUDIT_RETENTION_FLOOR_DAYS` (default 90): no org keeps its audit events for less.

    The operator's floor under the owner-set `audit_retention_days`; the purge never deletes
    events younger than it either. A value that is not a whole number from 1 to 3650 is an error.
    """
    raw = os.environ.get("AUDIT_RETENTION_FLOOR_DAYS", "").strip()
    if not raw:
        return DEFAULT_AUDIT_RETENTION_FLOOR_DAYS
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 3650:
        raise ValueError(f"AUDIT_RETENTION_FLOOR_DAYS must be a whole number of days from 1 to 3650, not {raw!r}")
    return int(raw)


def base_url() -> str:
    """Return `BASE_URL`, the public address this service is reached at, checked (`checked_base_url`)."""
    return checked_base_url(os.environ.get("BASE_URL", "http://127.0.0.1:8000"))


def checked_base_url(url: str) -> str:
    """Return `url` in the one spelling every comparison reads (scheme and host in lowercase, no
    trailing slash), or raise ValueError naming BASE_URL: http or https, a host, an optional port
    and path, nothing else. Browsers send `Origin` lowercase, and `is_https` reads the scheme."""
    usage = "BASE_URL must be http:// or https:// followed by a host, an optional port and a path"
    url = url.strip()
    _check_base_path_characters(url)
    parts = urlsplit(url)
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or past 65535
        port_ok = False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "?" in url or "#" in url \
            or "@" in parts.netloc or not port_ok:
        # Not the value itself: it may carry a password.
        raise ValueError(f"{usage} (a port from 1 to 65535); no user, query or fragment")
    # The path as a browser sends it: `/identité` typed is `/identit%C3%A9` in every URL built from it,
    # every cookie's Path and every prefix compared (identity.web.base_path); an escape given stays.
    # Its escapes in upper case, as browsers spell them (%c3%a9 is %C3%A9): a cookie's Path is
    # compared with the request's path byte for byte.
    path = _ESCAPE.sub(lambda escape: escape.group().upper(), quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~"))
    _check_base_path_segments(path)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


# What a URL's path may hold as typed (RFC 3986's pchar and '/'): letters, digits, -._~,
# !$&'()*+,;=:@ and %XX escapes; a letter beyond ASCII too, as the path is then encoded as a browser
# sends it. Any other ASCII character (a space, '"', '<', '>', a backslash, '^', '`', '{', '|', '}',
# '[', ']', a '%' that begins no escape) is no URL path's, and '?' and '#' end the path.
_PATH_PIECE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]+|%[0-9A-Fa-f]{2}|[^\x00-\x7f]+")


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _check_base_path_segments(path: str) -> None:
    """Raise ValueError naming BASE_URL when its path has an empty segment (`//identity`: put before
    every redirect's path it is a protocol-relative URL, to the host `identity`) or a `.` or `..`
    one (also as %2E: a browser resolves it away, and the prefix it sends is not the one compared)."""
    if any(segment == "" or unquote(segment) in (".", "..") for segment in path.split("/")[1:]):
        raise ValueError("BASE_URL's path must not hold an empty segment ('//') nor a '.' or '..' one "
                         "(nor %2E): it is the prefix of every URL the service builds")


def _check_base_path_characters(url: str) -> None:
    """Raise ValueError naming BASE_URL when `url` holds a control character or its path (after
    `scheme://host`) a character no URL path holds (`_PATH_PIECE`): urlsplit drops some (a tab, a
    newline, a '?' with nothing after it) and quote() encodes the rest into a path no one typed."""
    if any(ord(character) < 0x20 or ord(character) == 0x7f for character in url):
        raise ValueError("BASE_URL must not hold a control character (a tab, a newline)")
    _, separator, rest = url.partition("://")
    path = rest[len(rest.split("/", 1)[0]):] if separator else ""
    at = 0
    while at < len(path):
        piece = _PATH_PIECE.match(path, at)
        if piece is None:
            raise ValueError(f"BASE_URL's path may hold letters, digits, -._~!$&'()*+,;=:@/ and %XX escapes "
                             f"(a letter beyond ASCII is encoded), not {path[at]!r}; no query or fragment")
        at = piece.end()


def is_https(url: str) -> bool:
    """Tell whether BASE_URL `url` is https: the one place that decides (Secure cookies, the SAML
    binding cookie's SameSite=None, python3-saml's request)."""
    return urlsplit(url).scheme.lower() == "https"


def path_under(url: str, path: str) -> str:
    """Return `path` (absolute) under BASE_URL `url`'s path: what the browser sees when a proxy
    serves the service at, say, /identity. The one place that decides every cookie's Path."""
    return urlsplit(url).path.rstrip("/") + path


def from_environment() -> dict[str, object]:
    """Return the Flask config that the environment asks for."""
    settings: dict[str, object] = {
        "DATABASE_URL": database_url(),
        "SECRET_KEY": secret_key(),
        "BASE_URL": base_url(),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
    }
    # mail (identity.mail; without SMTP_URL, the outbox), the auto top-up's payment hook (identity.topups),
    # METRICS_TOKEN: /metrics on the service's own port, for a bearer of this token (identity.web.metrics_views)
    for name in ("SMTP_URL", "MAIL_FROM", "SMTP_CA_FILE", "TOPUP_WEBHOOK_URL", "TOPUP_WEBHOOK_SECRET", "METRICS_TOKEN"):
        if os.environ.get(name):
            settings[name] = os.environ[name]
    for name, low in WHOLE_SETTINGS.items():
        if os.environ.get(name, "").strip():
            settings[name] = _whole(name, low, 10**9)
    if os.environ.get("SESSION_ABSOLUTE_HOURS", "").strip():
        # A session ends at sign-in + this: past ~70 million hours that is after the year 9999, and
        # every sign-in was a 500. A year at most; 0 would end each session as it starts.
        settings["SESSION_ABSOLUTE_HOURS"] = _whole("SESSION_ABSOLUTE_HOURS", 1, MAX_SESSION_ABSOLUTE_HOURS)
    settings["TRUSTED_PROXY_HOPS"] = trusted_proxy_hops()
    # Read again where they are used; read here too, so that a bad one stops the service at start.
    audit_retention_floor_days()
    scim_token_ttl_seconds()
    if "SMTP_URL" in settings:
        smtp_server(str(settings["SMTP_URL"]))
    if "SMTP_CA_FILE" in settings:
        smtp_ca_file(str(settings["SMTP_CA_FILE"]))
    topup_hook(settings)
    audit_signing_key()
    saml_metadata_allow_private()
    prometheus_multiproc_dir()
    return settings


# The whole-number settings read into the Flask config, and each one's least value. 0 would make
# the service start and then refuse everything: no SCIM request under the rate (every one a 429),
# no session that outlives its sign-in, no SAML Response young enough, no sign-in link or pending
# SAML request per address. Only the key check's cache may be 0: gateways then ask every time.
WHOLE_SETTINGS = {"SESSION_IDLE_MINUTES": 1, "SCIM_RATE_LIMIT": 1, "SAML_MAX_ISSUE_AGE_SECONDS": 1,
                  "SAML_PENDING_REQUESTS_PER_ADDRESS": 1, "KEY_CHECK_MAX_AGE_SECONDS": 0,
                  "SIGN_IN_LINKS_PER_ADDRESS": 1, "SIGN_IN_LINKS_PER_CLIENT": 1,
                  "SIGN_IN_LINKS_PER_ADDRESS_ALL_CLIENTS": 1}

TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("", "0", "false", "no")


def flag(name: str) -> bool:
    """Return the on/off setting `name`: 1, true or yes is on; unset, blank, 0, false or no is off
    (any case). Anything else ('on', 'enabled') is a ValueError naming it, never quietly off."""
    raw = os.environ.get(name, "").strip().lower()
    if raw not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"{name} must be 1, true or yes (on) or 0, false or no (off), not {raw!r}")
    return raw in TRUE_WORDS


def saml_metadata_allow_private() -> bool:
    """Return `SAML_METADATA_ALLOW_PRIVATE` (default off): IdP metadata URLs may reach private addresses."""
    return flag("SAML_METADATA_ALLOW_PRIVATE")


def audit_signing_key() -> None:
    """Check `AUDIT_SIGNING_KEY` when set: a key that cannot be read is a ValueError naming it (never
    its value), at start, not a 500 at the public key route and every checkpoint."""
    raw = os.environ.get(signing.ENV_VAR)
    if raw:
        signing.parse_private_key(raw)


def smtp_ca_file(path: str) -> None:
    """Check `SMTP_CA_FILE`: a readable file of PEM CA certificates, as the mail's TLS context loads it;
    anything else would fail every send, leaving every mail in the outbox."""
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"SMTP_CA_FILE must name a readable file of PEM CA certificates, not {path!r} "
                         f"({getattr(error, 'strerror', None) or error})") from error


def prometheus_multiproc_dir() -> None:
    """Check `PROMETHEUS_MULTIPROC_DIR` when set: a folder, or a path one can be made at (the master
    makes it, identity.web.metrics_serve); a file there made every worker die as it booted."""
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not raw:
        return
    existing = next(folder for folder in (Path(raw).absolute(), *Path(raw).absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR must name a folder (or where one can be made), not the file "
                         f"{str(existing)!r}")


def topup_hook(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return the auto top-up's payment hook, (`TOPUP_WEBHOOK_URL`, `TOPUP_WEBHOOK_SECRET`), from the
    settings or environment, or None when no URL is set.

    A URL without its secret is a ValueError naming the secret: requests signed under the empty key
    could be forged by anybody, so the hook could not tell ours ("charge this team") from others'.
    """
    url = str(settings.get("TOPUP_WEBHOOK_URL") or "")
    if not url:
        return None
    parts = urlsplit(url)
    usage = "TOPUP_WEBHOOK_URL must be http:// or https:// followed by a host, an optional port and a path"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(usage)
    _url_port(parts, usage)  # else every top-up's delivery fails, long after the start
    secret = str(settings.get("TOPUP_WEBHOOK_SECRET") or "")
    if not secret:
        raise ValueError("TOPUP_WEBHOOK_URL is set without TOPUP_WEBHOOK_SECRET: top-up requests must be signed")
    return url, secret


def trusted_proxy_hops() -> int:
    """Return `TRUSTED_PROXY_HOPS` (default 0, off): how many proxies (load balancers) stand in front
    of the service, each appending the address it was reached from to `X-Forwarded-For`.

    The client's address (the per-address caps, the audit events' ip) is then that header's entry
    this many places from its end (werkzeug's ProxyFix `x_for`); entries further left are whatever
    the client sent. Off, the header is ignored: a client reaching the service directly could
    otherwise name any address. A whole number from 0 to 10.
    """
    return _whole("TRUSTED_PROXY_HOPS", 0, 10) if os.environ.get("TRUSTED_PROXY_HOPS", "").strip() else 0


def _whole(name: str, low: int, high: int) -> int:
    """Return the setting `name` as a whole number from `low` to `high`, or raise ValueError naming it."""
    raw = os.environ.get(name, "").strip()
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def metrics_port() -> int | None:
    """Return `METRICS_PORT`, the port of the gunicorn master's own `/metrics` listener, or None when unset.

    Read by the master's `when_ready` hook (identity.web.metrics_serve), and by `identity serve`
    before it migrates or starts anything: a bad one is an error naming it, not a hook's traceback."""
    raw = os.environ.get("METRICS_PORT", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 65535:
        raise ValueError(f"METRICS_PORT must be a port number from 1 to 65535, not {raw!r}")
    return int(raw)


def metrics_host() -> str:
    """Return `METRICS_HOST`, the address of that listener (default, and when blank: 127.0.0.1)."""
    return os.environ.get("METRICS_HOST", "").strip() or "127.0.0.1"


def scim_token_ttl_seconds() -> int:
    """Return `SCIM_TOKEN_TTL_SECONDS` (default 3600): how long a SCIM client's OAuth access token
    lives, 300 (5 minutes) to 21600 (6 hours); anything else is an error, never quietly changed."""
    return _whole("SCIM_TOKEN_TTL_SECONDS", 300, 6 * 3600) if os.environ.get("SCIM_TOKEN_TTL_SECONDS", "").strip() \
        else 3600


SMTP_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}  # and each one's default port


@dataclass(frozen=True)
class SmtpServer:
    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)


def smtp_server(url: str) -> SmtpServer:
    """Return the server `SMTP_URL` names, or raise ValueError naming the setting (never its value:
    it may hold a password). identity.mail sends through it; from_environment checks it at start."""
    usage = "SMTP_URL must be smtp://, smtp+starttls:// or smtps://[user:password@]host[:port]"
    parts = urlsplit(url)
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise ValueError(usage)
    port = _url_port(parts, usage)
    return SmtpServer(parts.scheme, parts.hostname, port or SMTP_SCHEMES[parts.scheme],
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None)


def _url_port(parts: SplitResult, usage: str) -> int | None:
    """Return the port of a setting's URL (None when it names none), or raise ValueError with the
    setting's `usage`: urllib's own error ("Port out of range 0-65535") says neither which setting
    nor what is expected, and :0 is not "unset" (the scheme's default port instead would be silent)."""
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{usage}: its port must be a number from 1 to 65535") from error
    if port == 0:
        raise ValueError(f"{usage}: its port must be a number from 1 to 65535")
    return port
