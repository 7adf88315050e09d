"""The `identity` command (DESIGN.md section 8): serve, migrate, create orgs, SCIM clients, gateway
credentials, invitations, mail; `billing`, `keys`, `audit` and `saml` come from their own modules."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

import click
from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from audit.actor import system_actor
from identity import (
    config,
    gateway,
    invitations,
    keys,
    mail,
    migrate,
    orgs,
    scim_credentials,
    teams,
)
from identity.db import CommitUnknown, Database
from identity.errors import DomainError
from identity.web import metrics_serve
from identity.web.audit_cli import audit as audit_group
from identity.web.billing_cli import billing as billing_group
from identity.web.keys_cli import keys_group, settle_after_upgrade
from identity.web.server import serve as run_server
from saml import cli as saml_cli
from saml import links


def _database() -> Database:
    return Database(config.database_url())


class Failure(click.ClickException):
    """A command that cannot do its work: `error: ...` on stderr, exit 1 (click's usage errors exit 2)."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


# The exit status of a command whose COMMIT lost its connection: the change may have been made (README).
COMMIT_UNKNOWN_EXIT = 4


class OutcomeUnknown(Failure):
    """A write whose COMMIT lost its connection (identity.db.CommitUnknown): neither "done" nor
    "nothing changed", so neither exit 0 nor the 1 of a refusal: a script re-running on 1 would make
    the change twice, or be refused as a duplicate of what it was told failed."""

    exit_code = COMMIT_UNKNOWN_EXIT


class Commands(click.Group):
    """The `identity` command. A bad setting (ValueError, naming it), a domain refusal, a database
    that cannot be reached or used, or one a newer release migrated, raised by any subcommand,
    `identity audit` and `identity saml` included, ends here, in one place, as one `error:` line
    and exit 1: a cron job's mail says what is wrong, never a traceback. A write whose COMMIT lost its
    connection may have been made: one line saying so and how to tell, exit 4 (OutcomeUnknown)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommitUnknown as error:
            raise OutcomeUnknown(f"the connection to the database was lost as the change was committed: it may "
                                 f"have been made; {error.check}") from error
        except DomainError as error:
            raise Failure(error.message) from error
        except ValueError as error:
            raise Failure(str(error)) from error
        except OperationalError as error:  # down, refused, unknown host, bad password, no such file...
            cause = str(error.orig or error).strip().splitlines()[0]  # the driver's words, never the URL
            raise Failure(f"the database of DATABASE_URL ({_safe_url(config.database_url())}) cannot be used: "
                          f"{cause}") from error
        except CommandError as error:  # alembic's: a revision this release does not know
            raise Failure(f"cannot migrate the database of DATABASE_URL: {error} (was it migrated by a newer "
                          "release?)") from error


@click.group(cls=Commands)
def main() -> None:
    """Enterprise identity provisioning: SCIM, SAML SSO, seats and an audit log."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="threads per worker (gthread; idle keep-alive connections need none)")
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Check the settings, migrate the database (and settle the keys an older release left behind),
    refresh its planner statistics and serve the app with gunicorn."""
    # Without BASE_URL, the address served is the public one: every URL built and every same-origin
    # check made is for it, not for BASE_URL's default port. Set in the environment, which the
    # workers (forked by gunicorn) and the master's hooks read as they read every setting.
    if not os.environ.get("BASE_URL"):
        os.environ["BASE_URL"] = serving_url(host, port)
    # Every setting first, as each worker and the master's hooks will read them: a bad one is one
    # `error:` line here, not a migrated database and workers dying with tracebacks.
    config.from_environment()
    metrics_serve.check_listener((host, port))  # METRICS_PORT, METRICS_HOST: the port free, the host ours
    migrate.upgrade(config.database_url())
    settle_after_upgrade(_database(), "serve")
    _database().analyze()
    config.secret_key()  # made once here, before workers start, so they all read the same key
    click.echo(f"serving on http://{host}:{port} (database: {_safe_url(config.database_url())})", err=True)
    click.echo(f"web console: {config.base_url()}/ (sign in with your work email or your org's slug)", err=True)
    with _database().reading() as session:
        fresh = not orgs.any_org(session)
    if fresh:
        click.echo("no organization yet: create the first one, with a sign-in link for its owner, with\n"
                   "  identity org create \"Acme\" --owner-email you@example.com --json", err=True)
    run_server(host, port, workers, threads)


def serving_url(host: str, port: int) -> str:
    """Return the address `identity serve --host H --port P` is reached at, for BASE_URL when unset.

    A wildcard host (every interface) names no address a browser uses: 127.0.0.1 is the one known
    to reach it; anything else needs BASE_URL (README).
    """
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}"


# The query parameters of DATABASE_URL whose values a message shows: libpq's that name a mode, a
# timeout, a name or a file's path (sslkey is the key file's path, not the key). Every other value,
# `password` and `sslpassword` (with which libpq signs in or opens the key) among them, is `***`.
SHOWN_QUERY_PARAMETERS = frozenset({
    "connect_timeout", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslnegotiation",
    "sslcompression", "sslsni", "gssencmode", "channel_binding", "require_auth", "target_session_attrs",
    "load_balance_hosts", "application_name", "fallback_application_name", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout", "host", "hostaddr", "port", "dbname", "user",
    "krbsrvname", "gsslib", "service", "passfile", "replication"})


def _safe_url(url: str) -> str:
    """DATABASE_URL as the messages show it: its password hidden, in the user:password part or in
    the query string (libpq's `password`, `sslpassword`, or any parameter not known to be harmless)."""
    parsed = make_url(url)
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = [f"{name}={value if name in SHOWN_QUERY_PARAMETERS else '***'}"
             for name, values in parsed.query.items()
             for value in (values if isinstance(values, tuple) else (values,))]
    return f"{shown}?{'&'.join(pairs)}" if pairs else shown


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema, settle the keys an older release left behind
    (`identity keys settle`) and refresh its planner statistics. Without SECRET_KEY, make the
    embedded default's key file too, as `serve` does: `gunicorn -w 4 wsgi:app` started next then
    has its workers read one key rather than race to make it. The key comes first: a key file that is
    not the service's own private file (identity.config) stops the command before a migration reads it."""
    config.secret_key()
    migrate.upgrade(config.database_url())
    settle_after_upgrade(_database(), "db upgrade")
    _database().analyze()
    click.echo("database is up to date", err=True)


@main.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
@click.option("--owner-email", default=None, help="the first owner's email (default: owner@<slug>.invalid)")
@click.option("--slug", default=None)
@click.option("--included-seats", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--seat-price-cents", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--max-seats", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def org_create(name: str, owner_email: str | None, slug: str | None, included_seats: int, seat_price_cents: int,
               max_seats: int | None, as_json: bool) -> None:
    """Create an org with its first owner; print a SCIM token and the owner's admin API key once."""
    migrate.upgrade(config.database_url())
    database = _database()
    actor = system_actor("cli")
    with database.transaction() as session:
        new = orgs.create_org(session, actor, name, slug=slug,
                              owner_email=owner_email or f"owner@{slug or teams.slugify(name)}.invalid",
                              included_seats=included_seats, seat_price_cents=seat_price_cents,
                              max_seats=max_seats)
        scim = scim_credentials.create_scim_token(session, actor, new.org.id, name="initial")
        admin_key = keys.create_api_key(session, actor, new.org.id, user_id=new.owner.id,
                                        team_id=new.default_team_id, name="owner admin key", scopes=["admin"])
        sign_in = links.issue_sign_in_link(session, actor, new.org.id, new.owner.email or new.owner.user_name)
    result: dict[str, Any] = {
        "org": {"id": new.org.id, "slug": new.org.slug, "name": new.org.name,
                "included_seats": new.org.included_seats, "seat_price_cents": new.org.seat_price_cents,
                "max_seats": new.org.max_seats, "default_team_id": new.default_team_id},
        "owner": {"id": new.owner.id, "email": new.owner.email},
        "scim_token": scim.secret,
        "admin_api_key": admin_key.secret,
        "scim_base_url": f"{config.base_url()}/scim/v2",
        # The first owner's way into the web console: one use, 15 minutes (`identity login-link` makes another).
        "sign_in_link": f"{config.base_url()}{links.LINK_PATH}{sign_in}",
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"org {new.org.slug} ({new.org.id}) created; owner {new.owner.email}")
        click.echo(f"SCIM base URL: {result['scim_base_url']}")
        click.echo(f"SCIM token (shown once): {scim.secret}")
        click.echo(f"admin API key (shown once): {admin_key.secret}")
        click.echo(f"owner's sign-in link to the web console (once, 15 minutes): {result['sign_in_link']}")


@main.group()
def scim() -> None:
    """SCIM provisioning credentials."""


@scim.group("client")
def scim_client() -> None:
    """OAuth 2.0 client-credentials clients (for Entra ID's gallery)."""


@scim_client.command("create")
@click.option("--org", "slug", required=True)
@click.option("--name", default="SCIM client", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def scim_client_create(slug: str, name: str, as_json: bool) -> None:
    """Create a client; print client_id, client_secret (shown once) and token_url."""
    database = _database()
    with database.transaction() as session:
        org_id = orgs.get_org_by_slug(session, slug).id
        issued = scim_credentials.create_scim_client(session, system_actor("cli"), org_id, name=name)
    result = {"client_id": issued.prefix, "client_secret": issued.secret,
              "token_url": f"{config.base_url()}/oauth/token", "scim_base_url": f"{config.base_url()}/scim/v2"}
    click.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


@scim_client.command("list")
@click.option("--org", "slug", required=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def scim_client_list(slug: str, as_json: bool) -> None:
    """List the org's clients, revoked ones included (never a secret)."""
    with _database().reading() as session:
        org_id = orgs.get_org_by_slug(session, slug).id
        found = [{"id": c.id, "client_id": c.client_id, "name": c.name, "created": c.created_at.isoformat(),
                  "revoked": c.revoked_at.isoformat() if c.revoked_at else None}
                 for c in scim_credentials.list_scim_clients(session, system_actor("cli"), org_id)]
    if as_json:
        click.echo(json.dumps({"scim_clients": found}))
        return
    for c in found:
        state = f"revoked {c['revoked']}" if c["revoked"] else "active"
        click.echo(f"{c['client_id']}  {c['name']}  created {c['created']}  {state}")


@scim_client.command("revoke")
@click.option("--org", "slug", required=True)
@click.argument("client_id")
def scim_client_revoke(slug: str, client_id: str) -> None:
    """Revoke a client (by its client_id or id): its access tokens are refused from the next request on."""
    with _database().transaction() as session:
        org_id = orgs.get_org_by_slug(session, slug).id
        scim_credentials.revoke_scim_client(session, system_actor("cli"), org_id, client_id)
    click.echo(f"SCIM client {client_id} revoked", err=True)


@main.group("gateway")
def gateway_group() -> None:
    """The LLM gateway's service credentials (the operator's, for every org)."""


@gateway_group.group("credential")
def gateway_credential() -> None:
    """Credentials with which a gateway calls POST /api/v1/keys/verify."""


@gateway_credential.command("create")
@click.option("--name", default="gateway", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def gateway_credential_create(name: str, as_json: bool) -> None:
    """Create a gateway credential; print its id and secret (shown once, stored hashed)."""
    migrate.upgrade(config.database_url())
    with _database().transaction() as session:
        issued = gateway.create_credential(session, system_actor("cli"), name=name)
    result = {"id": issued.id, "prefix": issued.prefix, "credential": issued.secret,
              "verify_url": f"{config.base_url()}/api/v1/keys/verify"}
    click.echo(json.dumps(result) if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    click.echo(f"gateway credential {issued.prefix} created (id {issued.id})", err=True)


@gateway_credential.command("list")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def gateway_credential_list(as_json: bool) -> None:
    """List gateway credentials, revoked ones included (never a secret)."""
    with _database().reading() as session:
        found = [{"id": c.id, "prefix": c.prefix, "name": c.name, "created": c.created_at.isoformat(),
                  "revoked": c.revoked_at.isoformat() if c.revoked_at else None}
                 for c in gateway.list_credentials(session)]
    if as_json:
        click.echo(json.dumps({"gateway_credentials": found}))
        return
    for c in found:
        click.echo(f"{c['id']}  {c['prefix']}  {c['name']}  created {c['created']}  "
                   f"{'revoked ' + str(c['revoked']) if c['revoked'] else 'active'}")


@gateway_credential.command("revoke")
@click.argument("credential_id")
def gateway_credential_revoke(credential_id: str) -> None:
    """Revoke a gateway credential (by id or prefix): its next check is refused (401)."""
    with _database().transaction() as session:
        revoked = gateway.revoke_credential(session, system_actor("cli"), credential_id)
    if not revoked:
        click.echo(f"error: no live gateway credential {credential_id!r}", err=True)
        sys.exit(1)
    click.echo(f"gateway credential {credential_id} revoked", err=True)


@main.group("invitations")
def invitations_group() -> None:
    """Invitations by email."""


@invitations_group.command("expire")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
def invitations_expire(slug: str | None) -> None:
    """Mark every pending invitation past its time as expired, each audited (run it from cron)."""
    database = _database()
    with database.reading() as session:
        ids = orgs.org_ids(session, slug)
    total = 0
    for org_id in ids:
        with database.transaction() as session:
            total += invitations.expire_due(session, org_id, system_actor("invitations expire"))
    click.echo(f"{total} invitations expired", err=True)


def mail_transport() -> mail.Transport | None:
    """The transport of SMTP_URL (MAIL_FROM, SMTP_CA_FILE), or None when it is not set."""
    return mail.configured(os.environ, config.base_url())


@main.group("mail")
def mail_group() -> None:
    """The mail outbox."""


@mail_group.command("retry")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
@click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True)
def mail_retry(slug: str | None, limit: int) -> None:
    """Deliver the outbox's undelivered mails over SMTP_URL; exit 1 when some still failed."""
    sender = mail_transport()
    if sender is None:
        click.echo("error: SMTP_URL is not set: mail stays in the outbox", err=True)
        sys.exit(1)
    database = _database()
    org_id = None
    if slug:
        with database.reading() as session:
            org_id = orgs.get_org_by_slug(session, slug).id
    report = mail.deliver(database, sender, system_actor("cli mail retry"), org_id=org_id, limit=limit)
    click.echo(f"{report.sent} sent, {report.failed} failed, {report.expired} expired", err=True)
    if report.failed:
        sys.exit(1)


main.add_command(audit_group)          # identity audit export|verify|purge|checkpoint|public-key
main.add_command(billing_group)        # identity billing check|renew|topups list|topups deliver
main.add_command(keys_group)           # identity keys settle
main.add_command(saml_cli.saml)        # identity saml configure|refresh|require-sso
main.add_command(saml_cli.login_link)  # identity login-link --org --email


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
