"""`identity audit ...` as an operator uses it: formats to stdout, errors, what each command records."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from audit import Actor
from identity import orgs
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import actions


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
