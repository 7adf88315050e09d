"""`identity billing`: seats and charges checked and renewed, the auto top-up's requests listed and
handed to the payment hook. Registered on the `identity` command by identity/web/cli.py, whose
`Commands` turns any refusal or database failure into one `error:` line."""

from __future__ import annotations

import json
import os
import sys

import click

from audit.actor import system_actor
from identity import config, orgs, seats, topups, wallets
from identity.billing import check_org
from identity.db import Database
from identity.service import run


def _database() -> Database:
    return Database(config.database_url())


@click.group()
def billing() -> None:
    """Seats and charges."""


@billing.command("check")
@click.option("--org", "slug", required=True)
def billing_check(slug: str) -> None:
    """Recompute seats and charges from memberships and the ledger; exit 1 on any mismatch."""
    with _database().reading() as session:
        found = orgs.get_org_by_slug(session, slug)
        problems = check_org(session, found.id)
    for line in problems:
        click.echo(line)
    if problems:
        sys.exit(1)
    click.echo(f"org {slug}: seats and charges agree", err=True)


@billing.command("renew")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
def billing_renew(slug: str | None) -> None:
    """Close ended billing cycles and charge renewals; running it twice charges once."""
    database = _database()
    with database.reading() as session:
        ids = orgs.org_ids(session, slug)
    for org_id in ids:
        charges = run(database, system_actor("billing renew"), seats.renew_org, org_id)
        for charge in charges:
            click.echo(f"{org_id}: renewed {charge.seats} seats for {charge.amount_cents} cents "
                       f"({charge.cycle_start.isoformat()} to {charge.cycle_end.isoformat()})")
        for entry in run(database, system_actor("billing renew"), wallets.grant_seat_usage, org_id):
            click.echo(f"{org_id}: team {entry.team_id} granted {entry.amount_micros} micro-cents of seat usage")


@billing.group("topups")
def billing_topups() -> None:
    """The auto top-up's requests for the operator's payment hook (TOPUP_WEBHOOK_URL)."""


TOPUP_STATUSES = (topups.PENDING, topups.FAILED, topups.DELIVERED, topups.FULFILLED, topups.CANCELLED, "all")


@billing_topups.command("list")
@click.option("--status", type=click.Choice(TOPUP_STATUSES), default=topups.PENDING, show_default=True)
def billing_topups_list(status: str) -> None:
    """List the auto top-up's requests as JSON lines: without a payment hook, this is the outbox to act on."""
    with _database().reading() as session:
        for found in topups.requests_with_status(session, None if status == "all" else status):
            click.echo(topups.body_of(found).decode())


@billing_topups.command("deliver")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def billing_topups_deliver(limit: int) -> None:
    """Hand undelivered top-up requests to the payment hook, signed; exit 1 when some still failed.

    As `mail retry`: without TOPUP_WEBHOOK_URL nothing can be delivered, which is an error (exit 1),
    so that a cron job whose hook is missing alerts instead of leaving the requests pending unseen.
    """
    hook = topups.configured(os.environ)
    if hook is None:
        click.echo("error: TOPUP_WEBHOOK_URL is not set: top-up requests stay pending "
                   "(identity billing topups list)", err=True)
        sys.exit(1)
    report = topups.deliver(_database(), hook, system_actor("billing topups deliver"), limit=limit)
    click.echo(json.dumps(report))
    if report[topups.FAILED]:
        sys.exit(1)
