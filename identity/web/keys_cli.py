"""`identity keys settle`: the keys an older release left behind, revoked per org in one audited
transaction (identity.key_settling). Registered on the `identity` command by identity/web/cli.py,
which also calls `settle_after_upgrade` once `db upgrade` or `serve` has migrated the database."""

from __future__ import annotations

import click

from audit.actor import system_actor
from identity import config, gateway, key_settling, orgs
from identity.db import Database
from identity.service import run

SHOWN_KEYS = 10  # prefixes named on an org's line; the count says how many more


def _database() -> Database:
    return Database(config.database_url())


@click.group("keys")
def keys_group() -> None:
    """Team API keys."""


@keys_group.command("settle")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
@click.option("--dry-run", is_flag=True, help="list the keys it would revoke; change nothing")
def keys_settle(slug: str | None, dry_run: bool) -> None:
    """Revoke (left_team) every key whose holder has no grant in the key's team: one line and, when it
    revoked any, one audit event per org; running it again revokes and records nothing.

    A release before 2026-12-06 left such keys active when an IdP group change took the team away.
    """
    database = _database()
    with database.reading() as session:
        found = orgs.org_slugs(session, slug)
    for org_id, org_slug in found:
        if dry_run:
            with database.reading() as session:
                left = key_settling.left_keys(session, org_id)
            named = [f"{key.prefix} ({key.holder}, team {key.team_id}, {key.status})" for key in left]
            click.echo(f"org {org_slug}: would revoke {_listed(named)}")
        else:
            revoked = run(database, system_actor("identity keys settle"), key_settling.settle_keys, org_id)
            click.echo(f"org {org_slug}: revoked {_listed(revoked)}")


def settle_after_upgrade(database: Database, command: str) -> None:
    """Settle the orgs that hold keys left behind (`identity keys settle`), each named on stderr; a
    database that holds none, as every one does after the first run, costs one SELECT. Then begin the
    operators' chain, once, with the gateway credentials it does not yet explain (identity.gateway)."""
    _begin_operator_chain(database, command)
    with database.reading() as session:
        found = key_settling.orgs_with_left_keys(session)
    for org_id, org_slug in found:
        revoked = run(database, system_actor(f"identity {command}"), key_settling.settle_keys, org_id)
        click.echo(f"org {org_slug}: revoked {_listed(revoked)} (identity keys settle)", err=True)


def _begin_operator_chain(database: Database, command: str) -> None:
    """Record the gateway credentials an older release made without an event, before any new act:
    `verify --org @operator` then holds every credential to an event (identity.reconcile)."""
    recorded = run(database, system_actor(f"identity {command}"), gateway.begin_chain)
    if recorded:
        click.echo(f"operators' chain: recorded {recorded} gateway credential(s) made before it "
                   "(gateway_credential.baseline)", err=True)


def _listed(keys: list[str]) -> str:
    """`N key(s) whose holder left the key's team`, and the first SHOWN_KEYS of them."""
    if not keys:
        return "no key: every key's holder is in the key's team"
    more = f", and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return f"{len(keys)} key(s) whose holder left the key's team (left_team): {', '.join(keys[:SHOWN_KEYS])}{more}"
