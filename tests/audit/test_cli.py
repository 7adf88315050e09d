"""`identity audit ...` as an operator uses it: formats to stdout, errors, what each command records."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from flask import Flask

from audit import Actor
from identity import orgs, teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import actions
from tests.identity.test_api_sessions import sign_in


def test_export_formats_go_to_stdout(cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    as_csv = cli("export", "--org", busy.org.slug, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    # busy's 16 events and the export checkpoint's own audit.checkpoint_created; audit.exported follows the file
    assert as_csv.exit_code == 0 and [int(r["seq"]) for r in rows] == list(range(1, 18))
    assert actions(db, busy.org.id)[-2:] == ["audit.checkpoint_created", "audit.exported"]
    as_ocsf = cli("export", "--org", busy.org.slug, "--format", "ocsf", "--action", "team.*")
    classes = {json.loads(line)["class_uid"] for line in as_ocsf.output.splitlines() if line.startswith("{")}
    assert classes == {3006}
    assert "not a piece of the chain" in as_ocsf.output  # the filtered export's note (stderr, mixed in here)


def _exported(lines: str) -> list[tuple[int, str, str]]:
    """(seq, action, actor type) of each event of a JSON Lines export (other output left out)."""
    docs = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    return [(doc["seq"], doc["action"], doc["actor"]["type"]) for doc in docs]


def test_the_same_filters_select_the_same_events_from_the_console_the_api_and_the_cli(
        cli: Callable[..., Result], app: Flask, admin_key: str, db: Database, acme: NewOrg, system: Actor) -> None:
    """One reading of the filters (identity.audit_filters) for every way out of the log: several
    actions comma-separated (as the console's field and its download link carry them), a time and an
    actor type select the same events from the console's download, the API's export and the CLI's."""
    with db.transaction() as session:
        teams.create_team(session, system, acme.org.id, "Platform")
    client = app.test_client(use_cookies=False)  # each request sends exactly the cookie its headers name
    by_key = client.post(f"/api/v1/orgs/{acme.org.slug}/teams", json={"name": "Data"},
                         headers={"Authorization": f"Bearer {admin_key}"})
    assert by_key.status_code == 201  # a team.created by another actor type, which the filter leaves out
    wanted = {"since": "2020-01-01T00:00", "action": "team.created,user.*", "actor_type": "system"}
    owner = {"Cookie": sign_in(db, acme.owner.id).cookie}
    page = client.get("/console/audit", query_string=wanted, headers=owner)
    link = re.search(r'href="([^"]*/audit-events/export\?format=jsonl[^"]*)"', page.get_data(as_text=True))
    assert link is not None, "the console's page links no JSON Lines download"
    console = client.get(html.unescape(link.group(1)), headers=owner)
    api = client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events/export", query_string=wanted,
                     headers={"Authorization": f"Bearer {admin_key}"})
    by_cli = cli("export", "--org", acme.org.slug, "--since", wanted["since"], "--action", wanted["action"],
                 "--actor-type", wanted["actor_type"])
    assert (console.status_code, api.status_code, by_cli.exit_code) == (200, 200, 0), by_cli.output
    selected = _exported(console.get_data(as_text=True))
    assert {(action, actor) for _seq, action, actor in selected} == {("team.created", "system"),
                                                                     ("user.created", "system")}
    assert _exported(api.get_data(as_text=True)) == selected
    assert _exported(by_cli.stdout) == selected


def test_an_actor_typed_as_the_address_the_rows_show_selects_that_members_events_everywhere(
        cli: Callable[..., Result], app: Flask, admin_key: str, db: Database, acme: NewOrg) -> None:
    """Every row shows a member actor by address, never by id: identity.audit_filters reads an address
    (userName or email, in any case) as that member's id for the API, its export and the CLI alike;
    an address no member has selects nothing, without an error."""
    as_owner = Actor("user", acme.owner.id, "owner@acme.test", org_id=acme.org.id, role="owner")
    with db.transaction() as session:
        teams.create_team(session, as_owner, acme.org.id, "By address", creator=False)
    client = app.test_client(use_cookies=False)
    key = {"Authorization": f"Bearer {admin_key}"}
    base = f"/api/v1/orgs/{acme.org.slug}/audit-events"
    by_id = client.get(base, query_string={"actor": acme.owner.id}, headers=key).get_json()["events"]
    by_address = client.get(base, query_string={"actor": "Owner@ACME.test"}, headers=key).get_json()["events"]
    assert "team.created" in [e["action"] for e in by_id] and by_address == by_id
    nobody = client.get(base, query_string={"actor": "nobody@acme.test"}, headers=key)
    assert (nobody.status_code, nobody.get_json()["events"]) == (200, [])
    exported = client.get(f"{base}/export", query_string={"actor": "owner@acme.test", "format": "jsonl"}, headers=key)
    by_cli = cli("export", "--org", acme.org.slug, "--actor", "owner@acme.test")
    assert by_cli.exit_code == 0, by_cli.output
    selected = [(e["seq"], e["action"], "user") for e in by_id]
    assert _exported(exported.get_data(as_text=True)) == _exported(by_cli.stdout) == selected


def test_a_bad_filter_is_bad_usage_before_the_file_is_opened(cli: Callable[..., Result], db: Database,
                                                             acme: NewOrg, tmp_path: Path) -> None:
    """The CLI's filters are checked as the API's are: a time that is not ISO 8601 names its option
    (exit 2), before the -o file is opened or anything is signed or recorded."""
    before = actions(db, acme.org.id)
    path = tmp_path / "export.jsonl"
    result = cli("export", "--org", acme.org.slug, "--until", "next tuesday", "-o", str(path))
    assert result.exit_code == 2 and "'--until'" in result.output and "ISO 8601" in result.output
    assert not path.exists() and actions(db, acme.org.id) == before


def test_verify_records_its_result(cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    assert cli("verify", "--org", busy.org.slug).exit_code == 0
    assert actions(db, busy.org.id)[-1] == "audit.verified"
    assert cli("verify", "--org", busy.org.slug).exit_code == 0  # its own event verifies too


def test_a_file_of_another_org_does_not_verify_as_this_one(cli: Callable[..., Result], db: Database, busy: NewOrg,
                                                           system: Actor, exported: Path) -> None:
    with db.transaction() as session:
        orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    result = cli("verify", "--org", "globex", str(exported))
    assert result.exit_code == 1 and "BROKEN at event #1" in result.output and "belongs to org" in result.output


def test_unknown_org_is_an_error(cli: Callable[..., Result], acme: NewOrg) -> None:
    for command in (("export",), ("verify",), ("purge",), ("checkpoint",)):
        result = cli(*command, "--org", "nope")
        assert result.exit_code != 0 and "no org with slug 'nope'" in result.output


def test_checkpoint_and_public_key_match(cli: Callable[..., Result], acme: NewOrg, tmp_path: Path) -> None:
    from audit.checkpoints import is_authentic
    from audit.signing import load_public_key

    made = json.loads(cli("checkpoint", "--org", acme.org.slug).output)
    pem = cli("public-key").output
    assert "BEGIN PUBLIC KEY" in pem and is_authentic(made, load_public_key(pem))
    assert made["seq"] == 4 and made["reason"] == "manual"
    assert "PRIVATE" not in pem and not any("PRIVATE" in p.read_text() for p in tmp_path.glob("*.json"))


def test_an_auditor_without_the_database_verifies_a_file_against_a_kept_checkpoint(
        cli: Callable[..., Result], db: Database, busy: NewOrg, exported: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from audit import checkpoints
    from audit.events import hashed_fields
    from audit.log import event_hash
    from identity.web.audit_cli import audit
    from tests.audit.conftest import read_lines, write_lines

    kept = tmp_path / "kept.json"  # the export's own checkpoint, as published by /audit-checkpoints
    with db.reading() as session:
        signed = checkpoints.newest(session, busy.org.id)
        assert signed is not None and signed.reason == "export"
        kept.write_text(json.dumps(checkpoints.document(signed)))
    pem = tmp_path / "service.pem"
    pem.write_text(cli("public-key").output)
    offline = CliRunner(env={"DATABASE_URL": f"sqlite:///{tmp_path / 'nothing-here.db'}",
                             "IDENTITY_DATA_DIR": str(tmp_path / "auditor")})
    args = ["verify", "--org", busy.org.slug, str(exported), "--checkpoint", str(kept), "--public-key", str(pem)]
    intact = offline.invoke(audit, args)
    assert intact.exit_code == 0 and "1 signed checkpoint(s) matched" in intact.output, intact.output

    docs = read_lines(exported)  # history rewritten with fresh hashes throughout
    docs[2]["actor"]["display"] = "mallory"
    prev = docs[1]["hash"]
    for doc in docs[2:]:
        doc["prev_hash"] = prev
        doc["hash"] = prev = event_hash(hashed_fields(doc))
    write_lines(exported, docs)
    caught = offline.invoke(audit, args)
    assert caught.exit_code == 1 and "rewritten" in caught.output, caught.output


def test_a_forged_kept_checkpoint_is_refused(cli: Callable[..., Result], busy: NewOrg, exported: Path,
                                             tmp_path: Path) -> None:
    made = json.loads(cli("checkpoint", "--org", busy.org.slug).output)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**made, "hash": "0" * 64}))
    result = cli("verify", "--org", busy.org.slug, str(exported), "--checkpoint", str(forged))
    assert result.exit_code == 1 and "forged" in result.output


def test_verifying_an_untouched_csv_or_ocsf_export_is_not_reported_as_a_broken_chain(
        cli: Callable[..., Result], busy: NewOrg, tmp_path: Path) -> None:
    """DESIGN.md 8 offers `identity audit export --format jsonl|csv` and `identity audit verify --org SLUG
    [FILE]`: exit 1 means the chain is broken (tampered with); docs/audit.md 6: exit 2 is bad usage,
    "never read as a broken chain". Only JSON Lines verifies, but an untouched CSV (or OCSF) export given
    to verify is answered "BROKEN at event #0: malformed", exit 1: a false tamper alarm to an auditor who
    kept the CSV, where the truth is "this is not a JSON Lines export"."""
    for fmt in ("csv", "ocsf"):
        path = tmp_path / f"export.{fmt}"
        assert cli("export", "--org", busy.org.slug, "--format", fmt, "-o", str(path)).exit_code == 0
        result = cli("verify", "--org", busy.org.slug, str(path))
        assert "BROKEN" not in result.output, (fmt, result.output)
        assert result.exit_code == 2, (fmt, result.exit_code, result.output)


def test_an_export_written_before_client_request_id_was_shown_still_verifies(
        cli: Callable[..., Result], busy: NewOrg, exported: Path) -> None:
    """`client_request_id` is outside the hash (audit.log.UNHASHED): showing it changes no hash, and a
    JSON Lines file exported before it was shown (lines without the field) verifies as before."""
    from tests.audit.conftest import read_lines, write_lines

    docs = read_lines(exported)
    assert all("client_request_id" in doc for doc in docs)
    write_lines(exported, [{k: v for k, v in doc.items() if k != "client_request_id"} for doc in docs])
    result = cli("verify", "--org", busy.org.slug, str(exported))
    assert result.exit_code == 0 and "intact" in result.output, result.output
