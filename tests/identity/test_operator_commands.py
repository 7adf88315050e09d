"""What an operator runs in production: the `identity` command, its cron jobs, the settings read at start.

From a hostile operator's review: each test's docstring says what the code did wrong before it passed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from audit import Actor, clock
from audit.models import AuditCheckpoint, AuditEvent
from identity import keys, orgs, wallet_controls
from identity.db import Database
from identity.models import Invitation
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import TopUpRequest, WalletEntry
from identity.web import cli as cli_module
from identity.web.app import create_app
from identity.web.cli import main
from tests.conftest import ReadingClient
from tests.factories import provision
from tests.identity.test_wallets import key_of, owner, post, top_up


def _no_traceback(result: Result) -> None:
    """A command that fails says why and exits; a Python exception escaping it is a traceback on cron's mail."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {type(result.exception).__name__}: {result.exception}")


def _count(db: Database, model: Any, *where: Any) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


# 1. `identity audit export -o FILE` that cannot be written -------------------------------------------------

def test_audit_export_to_an_unwritable_file_records_no_export_and_no_traceback(
        runner: CliRunner, db: Database, acme: NewOrg, tmp_path: Path) -> None:
    """The export is audited (`audit.exported`) and a checkpoint signed BEFORE the output file is opened:
    a typo in -o leaves the log saying the org's events were exported when nothing was, and the
    operator gets a FileNotFoundError traceback."""
    exported = (AuditEvent.org_id == acme.org.id, AuditEvent.action == "audit.exported")
    before_events, before_checkpoints = _count(db, AuditEvent, *exported), _count(db, AuditCheckpoint)
    result = runner.invoke(main, ["audit", "export", "--org", "acme", "-o", str(tmp_path / "missing" / "x.jsonl")])
    assert result.exit_code != 0
    assert _count(db, AuditEvent, *exported) == before_events, "an export that wrote nothing is in the audit log"
    assert _count(db, AuditCheckpoint) == before_checkpoints
    _no_traceback(result)


# 2. `identity audit verify`: a usage error must not read as a broken chain ---------------------------------

@pytest.mark.parametrize("case", ["unknown org", "unreadable public key", "malformed checkpoint file"])
def test_audit_verify_usage_errors_are_exit_2_not_the_broken_chain_status(
        runner: CliRunner, acme: NewOrg, tmp_path: Path, case: str) -> None:
    """identity/web/audit_cli.py documents: 1 = the chain is broken, 2 = bad usage. An unknown org
    exits 1 (ClickException), and a bad --public-key or --checkpoint file exits 1 with a traceback:
    a compliance job alarms "tampered" for a typo, and cannot tell the two apart."""
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a key, not json\n")
    args = {"unknown org": ["audit", "verify", "--org", "no-such-org"],
            "unreadable public key": ["audit", "verify", "--org", "acme", "--public-key", str(garbage)],
            "malformed checkpoint file": ["audit", "verify", "--org", "acme", "--checkpoint", str(garbage)]}[case]
    result = runner.invoke(main, args)
    _no_traceback(result)
    assert result.exit_code == 2, f"exit {result.exit_code} (1 means BROKEN): {result.output}"


# 3. `identity billing renew` after a missed cycle ---------------------------------------------------------

def test_billing_renew_after_missed_cycles_grants_seat_usage_for_every_cycle_it_charges(
        db: Database, system: Actor, cli_env: dict[str, str]) -> None:
    """Renewal charges every cycle the cron missed (seat.renewed x3), but the seats' included usage
    (DESIGN 3.8: credited "at each cycle start") is granted for the current cycle only: the customer
    pays three cycles of seats and gets one cycle of usage."""
    runner = CliRunner(env=cli_env)
    created = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    with clock.frozen_at(created):
        with db.transaction() as session:
            new = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
        for n in range(4):
            provision(db, system, new.org.id, f"u{n}@acme.test")
        with db.transaction() as session:
            wallet_controls.set_settings(session, system, new.org.id, seat_usage_micros=1000)
    with clock.frozen_at(created + dt.timedelta(days=1)):
        assert runner.invoke(main, ["billing", "renew"]).exit_code == 0  # January's grant
    grants = (WalletEntry.org_id == new.org.id, WalletEntry.request_id.like("seat_grant:%"))
    assert _count(db, WalletEntry, *grants) == 1
    with clock.frozen_at(dt.datetime(2026, 4, 20, tzinfo=dt.UTC)):  # cron was down from mid-February
        result = runner.invoke(main, ["billing", "renew"])
    assert result.exit_code == 0, result.output
    assert result.output.count("renewed") == 3  # February, March and April charged...
    assert _count(db, WalletEntry, *grants) == 1 + 3, "...but only April's seat usage granted"


def test_a_lazy_renewal_grants_seat_usage_for_every_cycle_it_charges(db: Database, system: Actor) -> None:
    """Renewals also happen lazily, at the first seat operation after the boundary (a missed cron loses
    nothing): each cycle that renewal charges is granted its seat usage there, in the same transaction."""
    created = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    with clock.frozen_at(created):
        with db.transaction() as session:
            new = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
            wallet_controls.set_settings(session, system, new.org.id, seat_usage_micros=1000)
    with clock.frozen_at(dt.datetime(2026, 4, 20, tzinfo=dt.UTC)):  # no cron at all since January
        provision(db, system, new.org.id, "late@acme.test")
    renewed = (AuditEvent.org_id == new.org.id, AuditEvent.action == "seat.renewed")
    grants = (WalletEntry.org_id == new.org.id, WalletEntry.request_id.like("seat_grant:%"))
    assert _count(db, AuditEvent, *renewed) == 3  # February, March and April
    assert _count(db, WalletEntry, *grants) == 3


# 4. `identity billing topups deliver` from cron -----------------------------------------------------------

@pytest.fixture
def pending_topup(db: Database, system: Actor, acme: NewOrg) -> str:
    key_id = key_of(db, acme, system)
    top_up(db, acme, 600)  # first: auto top-up set on an empty wallet raises its request at once
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 500, "amount_micros": 2000})
    post(db, UsageRecord(key_id, "m", 200, "r1"))
    with db.reading() as session:
        return session.scalars(select(TopUpRequest.id)).one()


@pytest.mark.parametrize("hook", ["refused", "not configured"])
def test_topups_deliver_exits_nonzero_when_nothing_reached_the_payment_hook(
        cli_env: dict[str, str], pending_topup: str, hook: str) -> None:
    """`mail retry` exits 1 when a mail still failed or SMTP_URL is unset; `billing topups deliver`
    exits 0 when the hook refused every request, and exits 0 doing nothing at all when
    TOPUP_WEBHOOK_URL is unset: the cron job never alerts and the customers' auto top-ups never
    reach the payment system."""
    env = {**cli_env, "TOPUP_WEBHOOK_URL": "http://127.0.0.1:1/hook", "TOPUP_WEBHOOK_SECRET": "s3cret"} \
        if hook == "refused" else cli_env
    result = CliRunner(env=env).invoke(main, ["billing", "topups", "deliver"])
    _no_traceback(result)
    assert result.exit_code != 0, f"{hook}: exit 0 with {result.output.strip()} and a request still pending"


# 5. Settings: refused at start with a message, never by tracebacks from every worker -----------------------

def test_a_malformed_smtp_url_is_refused_at_start_not_by_a_500_after_the_invitation_is_made(
        db: Database, system: Actor, acme: NewOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMTP_URL is copied into the config unchecked (unlike SCIM_TOKEN_TTL_SECONDS), so the service
    starts; then every invitation is committed and answered 500: the admin never sees the link,
    and the invitation is left pending with its token lost."""
    monkeypatch.setenv("SMTP_URL", "smtp://mail.internal:twentyfive")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-32-characters-min")
    monkeypatch.setenv("DATABASE_URL", db.url)
    try:
        app = create_app()
    except ValueError as error:  # the fix: refused at start, naming the setting
        assert "SMTP_URL" in str(error)
        return
    app.test_client_class = ReadingClient
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="owner", scopes=["admin"])
    answer = app.test_client().post("/api/v1/orgs/acme/invitations", json={"email": "new@acme.test"},
                                    headers={"Authorization": f"Bearer {key.secret}"})
    made = _count(db, Invitation, Invitation.org_id == acme.org.id)
    assert answer.status_code != 500, f"500 after {made} invitation(s) were committed: {json.dumps(answer.json)}"


@pytest.mark.parametrize("args,env,named", [
    (["serve"], {"SCIM_TOKEN_TTL_SECONDS": "5"}, "SCIM_TOKEN_TTL_SECONDS"),
    (["serve"], {"METRICS_PORT": "metrics"}, "METRICS_PORT"),
    (["serve", "--workers", "0"], {}, "workers"),
], ids=["ttl", "metrics-port", "zero-workers"])
def test_serve_refuses_bad_settings_before_migrating_and_starting_gunicorn(
        cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
        named: str) -> None:
    """`identity serve` migrates the database and starts gunicorn without reading the settings:
    a bad SCIM_TOKEN_TTL_SECONDS (which the README says "stops the service at start") makes every
    worker die with a ValueError traceback ("Worker failed to boot"), a bad METRICS_PORT is a
    traceback from the master's hook, and `--workers 0` starts a master that accepts connections
    and never answers them (/healthz hangs)."""
    started: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli_module, "run_server", lambda *a: started.append(a))
    result = CliRunner(env={**cli_env, **env}).invoke(main, args)
    _no_traceback(result)
    assert started == [], f"gunicorn was started with {started} despite {named}"
    assert result.exit_code != 0 and named in result.output


@pytest.mark.parametrize("args,env,named", [
    (["audit", "purge"], {"AUDIT_RETENTION_FLOOR_DAYS": "ninety"}, "AUDIT_RETENTION_FLOOR_DAYS"),
    (["mail", "retry"], {"SMTP_URL": "smtp://mail.internal:twentyfive"}, "SMTP_URL"),
    (["saml", "refresh", "--org", "no-such-org"], {}, "no org with slug"),
], ids=["purge-floor", "mail-smtp-url", "saml-refresh-unknown-org"])
def test_cron_commands_fail_with_a_message_not_a_traceback(
        cli_env: dict[str, str], acme: NewOrg, args: list[str], env: dict[str, str], named: str) -> None:
    """A cron job's mail should say what is wrong: these raise ValueError / NotFound tracebacks
    (the SMTP_URL one does not even name the variable: "Port could not be cast to integer value")."""
    result = CliRunner(env={**cli_env, **env}).invoke(main, args)
    assert result.exit_code != 0
    _no_traceback(result)
    assert named in result.output


# 6. /metrics counts what the service's processes commit; the CLI's events are in the audit log alone ---------

def test_seat_renewals_by_the_cron_job_are_in_the_audit_log_and_not_in_the_counters(
        db: Database, system: Actor, cli_env: dict[str, str], tmp_path: Path) -> None:
    """README ("Metrics for operators"): the counters count what the service's own processes commit; a
    renewal made by `identity billing renew` from cron is in the audit log (seat.renewed) and not in
    `identity_seat_purchases_total{kind="renewed"}`, even with PROMETHEUS_MULTIPROC_DIR shared with the
    service, and the command leaves no file in that directory. (The review found the README claiming
    otherwise. Counting there was not chosen: prometheus_client's multiprocess mode sums one run of a
    process tree whose directory is wiped at its start; every cron run would leave files of its own in
    it, read by each scrape until the service restarts.)"""
    import os
    import subprocess
    import sys

    with clock.frozen_at(dt.datetime.now(dt.UTC) - dt.timedelta(days=40)):
        with db.transaction() as session:
            new = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test", included_seats=0)
    folder = tmp_path / "prometheus"
    folder.mkdir()
    root = Path(__file__).parents[2]  # this checkout's code, in both processes
    env = {**os.environ, **cli_env, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(root)}
    renewed = subprocess.run([sys.executable, "-m", "identity.web.cli", "billing", "renew"], env=env, cwd=root,
                             capture_output=True, text=True, timeout=120)
    assert renewed.returncode == 0 and "renewed 1 seats" in renewed.stdout, renewed.stderr
    with db.reading() as session:
        assert session.scalar(select(func.count()).where(AuditEvent.org_id == new.org.id,
                                                         AuditEvent.action == "seat.renewed")) == 1
    assert list(folder.iterdir()) == [], "the command wrote counters into the service's directory"
    scrape = subprocess.run([sys.executable, "-c", "from identity.web import metrics; print(metrics.exposition()[0].decode())"],
                            env=env, capture_output=True, text=True, timeout=120, cwd=root)
    assert scrape.returncode == 0, scrape.stderr
    assert 'identity_seat_purchases_total{kind="renewed"}' not in scrape.stdout, scrape.stdout[-800:]


def test_a_renewal_the_service_makes_is_counted(db: Database, system: Actor) -> None:
    """The other half of what the README says: a renewal committed by a process of the service (the lazy
    one, at the first seat operation after the cycle's end) is counted. This process has the service's
    counters, as each worker has (create_app calls metrics.families())."""
    from identity.web import metrics

    def renewed() -> float:
        found = metrics.families().registry.get_sample_value("identity_seat_purchases_total", {"kind": "renewed"})
        return float(found or 0)

    with clock.frozen_at(dt.datetime.now(dt.UTC) - dt.timedelta(days=40)):
        with db.transaction() as session:
            new = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test", included_seats=0)
    before = renewed()
    provision(db, system, new.org.id, "late@acme.test")  # renews the owner's seat first, then buys one
    assert renewed() == before + 1
