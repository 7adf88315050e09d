"""`identity audit ...`: export, verify, purge and checkpoint an org's audit log (DESIGN.md section 8).

Part of the shell's CLI (identity.web.cli), so that `audit` itself knows nothing of the domain:
this resolves the database and org slugs, and records exports and verifications through
identity.audit_access. Exit status of `verify`: 0 intact (and, for the database, reconciled with the data),
1 broken (the first broken event is printed), 2 bad usage, 3 the chain is intact but the data
holds state its events do not explain (the first findings and their count are printed).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.exc import OperationalError

from audit import checkpoints, events, export, retention, signing, verify
from audit.actor import Actor, system_actor
from audit.log import OPERATOR_STREAM
from identity import audit_access, audit_filters, config, orgs, reconcile
from identity.db import Database
from identity.errors import DomainError, InvalidValue
from identity.models import Org

SHOWN_FINDINGS = 20  # reconciliation findings printed by `verify`; the count says how many more


@contextlib.contextmanager
def _database() -> Iterator[Database]:
    database = Database(config.database_url())
    try:
        yield database
    finally:
        database.dispose()


def _key() -> Ed25519PrivateKey:
    return signing.load_signing_key(config.data_dir())


def _actor(command: str) -> Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        who = "unknown"
    return system_actor(f"identity audit {command} ({who})")


OPERATOR = "@operator"  # `--org @operator`: the operators' own chain (audit.log.OPERATOR_STREAM); no slug has an @


def _org_id(db: Database, slug: str) -> str:
    """The org's id; an unknown slug is bad usage (exit 2), never mistaken for `verify`'s broken chain (1)."""
    if slug == OPERATOR:
        return OPERATOR_STREAM
    with db.reading() as session:
        try:
            return orgs.get_org_by_slug(session, slug).id
        except DomainError as error:
            raise click.BadParameter(error.message, param_hint="'--org'") from error


@click.group()
def audit() -> None:
    """The audit log: export, verify, purge, checkpoint."""


@audit.command("export")
@click.option("--org", "slug", required=True)
@click.option("--format", "fmt", type=click.Choice(export.FORMATS), default="jsonl", show_default=True)
@click.option("--since", help="from this time on (ISO 8601, inclusive)")
@click.option("--until", help="up to this time (ISO 8601, exclusive)")
@click.option("--action", "actions", multiple=True,
              help="an action, or a prefix such as 'user.*'; repeat it or separate with commas for several")
@click.option("--actor", help="an actor id, or a member's userName or email")
@click.option("--actor-type", help="user, api_key, scim_token, scim_client or system")
@click.option("--target", help="a target id")
@click.option("--target-type", help="org, team, user, ...")
@click.option("--outcome", help="success, failure or refused")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="-",
              help="file (default: stdout)")
def export_command(slug: str, fmt: str, actions: tuple[str, ...], output: str, **given: str | None) -> None:
    """Export the org's events, streamed; the export itself is an audit event, once it is written.

    The filters are the admin API's and the console's, read by the same code (identity.audit_filters).
    """
    with _database() as db:
        selection = _selection(db, _org_id(db, slug), given, actions)
        with _open(output) as handle:
            _export(db, fmt, handle, selection)


def _selection(db: Database, org_id: str, given: dict[str, str | None], actions: tuple[str, ...]) -> events.Selection:
    """The events the options select; a bad one is bad usage (exit 2), named as its option."""
    try:
        with db.reading() as session:
            return audit_filters.selection_of(session, org_id, audit_filters.filters_from(given.get, actions))
    except InvalidValue as error:
        option = str(error.context.get("field", "")).replace("_", "-")
        raise click.BadParameter(error.message, param_hint=f"'--{option}'") from error


def _export(db: Database, fmt: str, handle: IO[str], selection: events.Selection) -> None:
    """Sign the head, write the events, then record the export: an export that could not be written is not in the log.

    The checkpoint comes first so that the file ends with its record, `audit.checkpoint_created`,
    and the checkpoint covers every event before it; `audit.exported` follows the file. A chain
    with no event yet (the operators', before their first act) has no head to sign: its export is
    empty, and recorded as any export is (as `verify` records checking it).
    """
    try:
        with db.transaction() as session:
            checkpoints.sign_head(session, _key(), selection.org_id, "export", actor=_actor("export"))
    except checkpoints.UnverifiedHead as error:  # export anyway: the file is the evidence; say it is unsigned
        click.echo(f"warning: {error}; the export goes on without a checkpoint", err=True)
    except checkpoints.NoChain:  # the operators' chain before its first act: nothing is wrong, nothing to sign
        click.echo(f"note: the chain {selection.org_id!r} has no events yet: no checkpoint, an empty export",
                   err=True)
    if not selection.contiguous:
        click.echo("note: a filtered export is a selection of events, not a piece of the chain: "
                   "each event keeps its hash, but the file will not verify as a chain", err=True)
    with db.reading() as session:
        total = events.count(session, selection) if sys.stderr.isatty() else 0
        rows = events.iter_export_rows(session, selection)
        with _progress(total, fmt) as bar:
            try:
                for chunk in export.chunks(_counted(rows, bar), fmt):
                    handle.write(chunk)
                handle.flush()
            except OSError as error:  # a full disk: the export failed, and is not recorded as made
                raise click.ClickException(f"the export could not be written: {error}") from error
    with db.transaction() as session:
        audit_access.record_export(session, _actor("export"), selection, fmt)


@contextlib.contextmanager
def _open(output: str) -> Iterator[IO[str]]:
    """stdout for `-`; else the file, opened before anything is read, signed or recorded (a bad path: exit 2)."""
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        handle = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise click.BadParameter(f"{output}: {error.strerror or error}", param_hint="'-o' / '--output'") from error
    with handle:
        yield handle


@contextlib.contextmanager
def _progress(total: int, fmt: str) -> Iterator[Any]:
    """A progress bar on a terminal's stderr; nothing when stderr is not a terminal."""
    if not total:
        yield None
        return
    with click.progressbar(length=total, label=f"exporting {fmt}", file=sys.stderr) as bar:
        yield bar


def _counted(rows: Iterator[Any], bar: Any) -> Iterator[Any]:
    if bar is None:
        yield from rows
        return
    for number, row in enumerate(rows, start=1):
        yield row
        if number % 1000 == 0:
            bar.update(1000)


def _public_key(path: str | None) -> Ed25519PublicKey:
    """The key given (an unreadable file is bad usage, exit 2), else this host's."""
    if not path:
        return _key().public_key()
    try:
        with open(path, encoding="utf-8") as handle:
            return signing.load_public_key(handle.read())
    except (OSError, ValueError) as error:
        raise click.BadParameter(f"{path} is not an Ed25519 public key (PEM): {error}",
                                 param_hint="'--public-key'") from error


def _kept(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    """The checkpoints in the files given: each a checkpoint, a list of them, or {"checkpoints": [...]}."""
    found: list[dict[str, Any]] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as error:
            raise click.BadParameter(f"{path} is not a JSON checkpoint: {error}",
                                     param_hint="'--checkpoint'") from error
        listed = data if isinstance(data, list) else data.get("checkpoints", [data]) if isinstance(data, dict) else None
        if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
            raise click.BadParameter(f"{path} holds no checkpoint object", param_hint="'--checkpoint'")
        found.extend(listed)
    return found


@audit.command("verify")
@click.option("--org", "slug", required=True)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--checkpoint", "kept", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a checkpoint (or list of them) kept from /audit-checkpoints; repeatable")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False),
              help="the service's public key (PEM, from /api/v1/audit/public-key); default: this host's key")
@click.option("--reconcile/--no-reconcile", "reconciling", default=True, show_default=True,
              help="without FILE, also check that the log explains every user, grant, seat and key")
def verify_command(slug: str, file: str | None, kept: tuple[str, ...], public_key: str | None,
                   reconciling: bool) -> None:
    """Check the database, or an exported JSON Lines FILE; exit 1 naming the first broken event.

    Without FILE, an intact chain is then reconciled with the data: exit 3 with the findings.
    """
    public = _public_key(public_key)
    findings: list[reconcile.Finding] = []
    if file is None:
        report, findings = _verify_database(slug, public, _kept(kept), reconciling)
    else:
        report = _verify_export(slug, file, public, _kept(kept))
    click.echo(f"org {slug}: {report.summary()}")
    if not report.intact:
        sys.exit(1)
    if findings:
        click.echo(f"org {slug}: NOT RECONCILED: {len(findings)} change(s) in the data that no event explains")
        for finding in findings[:SHOWN_FINDINGS]:
            click.echo(f"  {finding}")
        if len(findings) > SHOWN_FINDINGS:
            click.echo(f"  ... and {len(findings) - SHOWN_FINDINGS} more")
        sys.exit(3)
    if file is None and reconciling:
        what = "gateway credential" if slug == OPERATOR else "user, grant, seat and key"
        click.echo(f"org {slug}: reconciled: the events explain every {what}")


def _verify_database(slug: str, public: Ed25519PublicKey, kept: list[dict[str, Any]],
                     reconciling: bool) -> tuple[verify.Report, list[reconcile.Finding]]:
    """Check the stored chain; when it holds, reconcile it with the data; record both results."""
    findings: list[reconcile.Finding] = []
    with _database() as db:
        org_id = _org_id(db, slug)
        with db.reading() as session:
            report = verify.verify_database(session, org_id, public, kept)
        reconciled = reconciling and report.intact
        if reconciled:
            # One snapshot (every read transaction is, on both databases: identity.db), so that a
            # change committed between reading the events and reading a table is not a finding.
            with db.reading() as session:
                findings = (reconcile.reconcile_operator(session) if org_id == OPERATOR_STREAM
                            else reconcile.reconcile(session, org_id))
        with db.transaction() as session:
            audit_access.record_verification(session, _actor("verify"), org_id, {
                "intact": report.intact, "checked": report.checked, "last_seq": report.last_seq,
                "broken_seq": report.broken.seq if report.broken else None,
                "reconciled": (not findings) if reconciled else None, "findings": len(findings),
                "first_findings": [str(f) for f in findings[:5]]})
    return report, findings


def _verify_export(slug: str, file: str, public: Ed25519PublicKey, kept: list[dict[str, Any]]) -> verify.Report:
    """Check a file against the database's checkpoints and the kept ones; offline, against the kept ones only."""
    _require_jsonl(file)
    try:
        with _database() as db:
            org_id = _org_id(db, slug)
            with db.reading() as session:
                stored = checkpoints.all_of(session, org_id)
    except OperationalError:  # an auditor's machine: the file, the public key and the checkpoints they kept
        click.echo("note: no database here: the file is checked on its own and against the given checkpoints",
                   err=True)
        org_id, stored = _file_org(file), []
    signed, forged = verify.trusted_checkpoints([*stored, *kept], org_id, public)
    if forged is not None:
        return verify.Report(org_id, broken=forged)
    with open(file, encoding="utf-8") as handle:
        return verify.verify_file(handle, org_id, signed.values())


def _require_jsonl(file: str) -> None:
    """Refuse, as bad usage, a file that is no JSON Lines export (a CSV or OCSF one): not a broken chain.

    Decided by the first line: one that is not a JSON object, or an OCSF event, is another format;
    a JSON event that does not check out further on is the chain's business (exit 1).
    """
    with open(file, encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        return  # an empty export of an empty selection: nothing to check, as before
    try:
        event = json.loads(first)
    except ValueError:
        event = None
    if not isinstance(event, dict) or ("class_uid" in event and "hash" not in event):
        raise click.BadParameter(f"{file} is not a JSON Lines export: only `identity audit export --format jsonl` "
                                 "keeps what verify checks; verify that export", param_hint="'FILE'")


def _file_org(file: str) -> str:
    with open(file, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    return str(json.loads(line)["org_id"])
                except (ValueError, KeyError, TypeError):
                    break
    raise click.ClickException(f"{file} holds no exported audit event")


def _orgs(db: Database, slug: str | None) -> list[tuple[str, str, int]]:
    """Return (id, slug, retention days) of one org, or of every org."""
    with db.reading() as session:
        try:
            found = [orgs.get_org_by_slug(session, slug)] if slug else [
                session.get_one(Org, org_id) for org_id in orgs.all_org_ids(session)]
        except DomainError as error:
            raise click.BadParameter(error.message, param_hint="'--org'") from error
        return [(org.id, org.slug, org.audit_retention_days) for org in found]


@audit.command("purge")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
def purge_command(slug: str | None) -> None:
    """Delete events older than each org's retention period (never than AUDIT_RETENTION_FLOOR_DAYS).

    A signed checkpoint keeps the rest verifiable. An org whose chain does not verify is not
    purged: it is named on stderr, and the exit status is 1.
    """
    key, floor, refused = _key(), config.audit_retention_floor_days(), 0
    with _database() as db:
        for org_id, org_slug, days in _orgs(db, slug):
            try:
                with db.transaction() as session:
                    done = retention.purge_org(session, _actor("purge"), key, org_id, days, floor_days=floor)
            except checkpoints.UnverifiedHead as error:  # the other orgs are still purged
                click.echo(f"org {org_slug}: nothing purged: {error}", err=True)
                refused += 1
                continue
            click.echo(f"org {org_slug}: removed {done.removed} events older than "
                       f"{events.format_time(done.cutoff)} ({max(days, floor)} days); "
                       f"the chain now starts after #{done.base_seq}")
    if refused:
        sys.exit(1)


@audit.command("checkpoint")
@click.option("--org", "slug", default=None, help="one org (default: every org)")
def checkpoint_command(slug: str | None) -> None:
    """Verify and sign each org's current head (e.g. hourly from cron); print the checkpoints.

    Without --org, an org with nothing new since its last checkpoint (but that checkpoint's own
    audit.checkpoint_created) is skipped. An org whose chain does not verify gets no checkpoint:
    it is named on stderr, and the exit status is 1.
    """
    key, refused = _key(), 0
    with _database() as db:
        for org_id, org_slug, _days in _orgs(db, slug):
            try:
                with db.transaction() as session:
                    if slug is None and checkpoints.idle_since_signed(session, org_id):
                        continue  # nothing new since the last checkpoint but its own record
                    made = checkpoints.sign_head(session, key, org_id, "scheduled" if slug is None else "manual",
                                                 actor=_actor("checkpoint"))
                    click.echo(json.dumps(checkpoints.document(made)))
            except checkpoints.UnverifiedHead as error:  # the other orgs are still signed
                click.echo(f"org {org_slug}: no checkpoint: {error}", err=True)
                refused += 1
    if refused:
        sys.exit(1)


@audit.command("public-key")
def public_key_command() -> None:
    """Print the public key that verifies this service's checkpoints (PEM)."""
    click.echo(signing.public_pem(_key()), nl=False)
