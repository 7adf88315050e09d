"""Run one scripted session against a tree of this service and print its audit export, normalized.

Used to show that a restructuring left the audit log as it was: run it against the tree before and
the tree after, each with its own interpreter and with the tree's root as the working directory,
and diff the two outputs.

    cd /tmp/before && .venv/bin/python /work/main/benchmarks/compare_audit_exports.py --root . > /tmp/before.txt
    cd /work/main  && .venv/bin/python benchmarks/compare_audit_exports.py --root . > /tmp/after.txt
    diff -u /tmp/before.txt /tmp/after.txt

The session, on a fresh migrated SQLite database, through the real HTTP routes (Flask's test client):
  1. an org (system actor), a SCIM token and an admin API key of the owner;
  2. SCIM (Okta-style bodies): two users created, one PATCHed (name, emails[type eq "work"].value),
     one deactivated; a group with both as members, PATCHed (remove one, add it back, rename);
  3. SAML SSO configured from the test IdP's metadata by `PUT /api/v1/orgs/<org>/sso` with the key
     (JIT and IdP-initiated allowed), then an IdP-initiated sign-in at /saml/<org>/acs, JIT-creating
     the person;
  4. `identity audit export --org SLUG --format jsonl` (click's CliRunner), printed one event per line
     as action, actor type, target type, outcome and changes, with ids, times, hashes, request ids and
     secret prefixes replaced by placeholders (the same value always by the same placeholder).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the tree's root (also the working directory)")
    parser.add_argument("--name-id-format", choices=("email", "persistent"), default="email",
                        help="the NameID format of the SAML sign-in (default: the test IdP's, email)")
    parser.add_argument("--ids", action="store_true",
                        help="also print the actor's and target's (normalized) ids and displays, and the request id")
    parser.add_argument("--raw", action="store_true", help="print the export as it is, not normalized")
    return parser.parse_args()


# -- normalization ---------------------------------------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
TEAM_ID = re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{8}\b")  # identity.teams: f"{slugify(name)}-{token_hex(4)}"
SECRET_PREFIX = re.compile(r"\b(scim|key|inv|link|sc|cli)_[0-9a-f]{12}\b")
HEX = re.compile(r"\b[0-9a-f]{16,}\b", re.I)  # hashes, key ids, fingerprints
SAML_ID = re.compile(r"\b_[a-z]?[0-9a-f]{32}\b")  # the test IdP's assertion, response and session ids
B64ISH = re.compile(r"^[A-Za-z0-9_\-+/=]{24,}$")  # a whole value that is an opaque token (request ids, ...)
# Fields whose value is an id whatever it looks like.
ID_FIELDS = {"id", "request_id", "checkpoint_id", "key_id", "prefix", "token_prefix", "key_prefix",
             "session_id", "session_index", "assertion_id", "hash", "prev_hash", "head_hash", "secret_hash",
             "fingerprint", "signing_cert_sha256", "sp_cert_sha256", "sp_key_fingerprint"}


class Placeholders:
    """Gives each distinct value of a kind a numbered placeholder, the same one each time it is seen."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.seen:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.seen[key] = f"<{kind}{self.counts[kind]}>"
        return self.seen[key]

    def text(self, value: str) -> str:
        value = UUID.sub(lambda m: self("uuid", m.group(0).lower()), value)
        value = TIME.sub(lambda m: "<time>", value)
        value = TEAM_ID.sub(lambda m: self("team", m.group(0)), value)
        value = SECRET_PREFIX.sub(lambda m: self(f"{m.group(1)}_prefix", m.group(0)), value)
        value = SAML_ID.sub(lambda m: self("saml_id", m.group(0)), value)
        value = HEX.sub(lambda m: self("hex", m.group(0).lower()), value)
        return value

    def value(self, value: Any, field: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, field) for v in value]
        if isinstance(value, str):
            if field in ID_FIELDS and not UUID.fullmatch(value) and not SECRET_PREFIX.fullmatch(value) \
                    and not TIME.fullmatch(value):
                return self(field, value)
            out = self.text(value)
            if out == value and B64ISH.match(value) and not value.isalpha():
                return self("opaque", value)
            return out
        return value


def normalized(lines: list[str], with_ids: bool = False) -> list[str]:
    """Each event as action, actor type, target type, outcome and changes (and, `with_ids`, who and what).

    The actor's and target's ids are given their placeholders first, even when not printed, so that
    an id in `changes` is numbered by the event that introduced it, not by where it first shows up.
    """
    names = Placeholders()
    out = []
    for line in lines:
        event = json.loads(line)
        actor = {"id": names.value(event["actor"]["id"]), "display": names.value(event["actor"]["display"])}
        target = {"id": names.value(event["target"]["id"]), "display": names.value(event["target"]["display"])}
        kept = {"action": event["action"], "actor_type": event["actor"]["type"],
                "target_type": event["target"]["type"], "outcome": event["outcome"],
                "changes": names.value(event["changes"])}
        if with_ids:
            kept.update(actor=actor, target=target, request_id=names.value(event["request_id"], "request_id"),
                        source_ip=event["source_ip"], user_agent=event["user_agent"])
        out.append(json.dumps(kept, sort_keys=True, ensure_ascii=False))
    return out


# -- the session -----------------------------------------------------------------------------------

def first_of(modules: tuple[str, ...], name: str) -> Any:
    """`name` from the first of `modules` that this tree has."""
    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name)
            print(f"compare_audit_exports: {module}.{name}", file=sys.stderr)
            return found
        except ModuleNotFoundError as error:
            missing = error.name or ""
            if module != missing and not module.startswith(missing + "."):  # there, but broken within
                raise
    raise SystemExit(f"none of {', '.join(modules)} in this tree")


def import_tree(root: Path) -> dict[str, Any]:
    """Import what the session needs from the tree at `root`, wherever this version keeps it."""
    sys.path.insert(0, str(root))
    from audit.actor import system_actor
    from identity import keys, orgs
    from identity.db import Database
    from identity.migrate import upgrade

    create_app = first_of(("identity.web.app", "identity.app"), "create_app")  # after, before the move
    cli = first_of(("identity.web.cli", "identity.cli"), "main")
    import identity
    from tests.saml.idp import KeyPair, Options, TestIdP, post_form
    from tests.scim.client import GROUP, PATCH, USER

    assert Path(identity.__file__).resolve().is_relative_to(root.resolve()), \
        f"identity imported from {identity.__file__}, not from {root}"
    return {"system_actor": system_actor, "keys": keys, "orgs": orgs, "Database": Database, "upgrade": upgrade,
            "create_app": create_app, "cli": cli, "KeyPair": KeyPair, "Options": Options, "TestIdP": TestIdP,
            "post_form": post_form, "GROUP": GROUP, "PATCH": PATCH, "USER": USER}


def check(answer: Any, *expected: int) -> Any:
    if answer.status_code not in expected:
        raise SystemExit(f"{answer.request.method} {answer.request.path}: {answer.status_code} "
                         f"(expected {expected}): {answer.get_data(as_text=True)[:2000]}")
    return answer


def run_session(t: dict[str, Any], url: str, name_id_format: str) -> list[str]:
    system = t["system_actor"]("compare_audit_exports")
    db = t["Database"](url)
    with db.transaction() as session:
        new = t["orgs"].create_org(session, system, "Acme", owner_email="owner@acme.test")
        scim_token = t["keys"].create_scim_token(session, system, new.org.id)
        api_key = t["keys"].create_api_key(session, system, new.org.id, user_id=new.owner.id,
                                           team_id=new.default_team_id, name="admin", scopes=["admin"])
    slug = new.org.slug
    app = t["create_app"]({"DATABASE": db, "DATABASE_URL": url, "SECRET_KEY": os.environ["SECRET_KEY"],
                           "BASE_URL": "http://localhost", "TESTING": True})
    client = app.test_client()

    def scim(method: str, path: str, body: Any = None) -> Any:
        return client.open(f"/scim/v2{path}", method=method, data=None if body is None else json.dumps(body),
                           headers={"Authorization": f"Bearer {scim_token.secret}",
                                    "Content-Type": "application/scim+json"}, buffered=True)

    def patch(path: str, operations: list[dict[str, Any]]) -> Any:
        return scim("PATCH", path, {"schemas": [t["PATCH"]], "Operations": operations})

    USER, GROUP = t["USER"], t["GROUP"]

    # 2. SCIM, as Okta sends it
    def okta_user(email: str, given: str, family: str, external_id: str) -> dict[str, Any]:
        return {"schemas": [USER], "userName": email, "name": {"givenName": given, "familyName": family},
                "emails": [{"primary": True, "value": email, "type": "work"}], "displayName": f"{given} {family}",
                "locale": "en-US", "externalId": external_id, "groups": [], "password": "1mz050nq", "active": True}

    ann = check(scim("POST", "/Users", okta_user("ann@example.com", "Ann", "Archer", "00u1ann")), 201).json["id"]
    bob = check(scim("POST", "/Users", okta_user("bob@example.com", "Bob", "Baker", "00u2bob")), 201).json["id"]
    check(patch(f"/Users/{ann}", [
        {"op": "replace", "path": "name", "value": {"givenName": "Anne", "familyName": "Archer-Smith"}},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "anne@example.com"}]), 200, 204)
    check(patch(f"/Users/{bob}", [{"op": "replace", "value": {"active": False}}]), 200, 204)
    gid = check(scim("POST", "/Groups", {"schemas": [GROUP], "displayName": "Engineering",
                                         "members": [{"value": ann, "display": "Anne"},
                                                     {"value": bob, "display": "Bob"}]}), 201).json["id"]
    check(patch(f"/Groups/{gid}", [{"op": "remove", "path": f'members[value eq "{bob}"]'}]), 200, 204)
    check(patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": bob, "display": "Bob"}]}]),
          200, 204)
    check(patch(f"/Groups/{gid}", [{"op": "replace", "value": {"id": gid, "displayName": "Platform"}}]), 200, 204)

    # 3. SAML: configured from the test IdP's metadata through the admin API, then an IdP-initiated sign-in
    idp = t["TestIdP"]("https://idp.example.test/metadata", t["KeyPair"].make("test idp"))
    check(client.put(f"/api/v1/orgs/{slug}/sso", json={"idp_metadata_xml": idp.metadata().decode(), "jit": True,
                                                       "allow_idp_initiated": True},
                     headers={"Authorization": f"Bearer {api_key.secret}"}), 200)
    options: dict[str, Any] = {"name_id": "carol@acme.test",
                               "attributes": {"email": ["carol@acme.test"], "firstName": ["Carol"],
                                              "lastName": ["Clark"]}}
    if name_id_format == "persistent":
        options["name_id"] = "00persistentcarol"
        options["name_id_format"] = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    base = "http://localhost"
    response = idp.response(f"{base}/saml/{slug}/metadata", f"{base}/saml/{slug}/acs", t["Options"](**options))
    check(client.post(f"/saml/{slug}/acs", data=t["post_form"](response, "/me")), 302, 303)
    check(client.get("/me"), 200)
    db.dispose()

    # 4. the export, by the command
    from click.testing import CliRunner

    result = CliRunner().invoke(t["cli"], ["audit", "export", "--org", slug, "--format", "jsonl"],
                                catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"audit export failed ({result.exit_code}): {result.output}")
    return [line for line in result.stdout.splitlines() if line.startswith("{")]  # not stderr's notes


def main() -> None:
    args = parse_args()
    # Only the result goes to stdout: whatever the service prints (its request logs) goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    root = Path(args.root).resolve()
    os.chdir(root)
    work = Path(tempfile.mkdtemp(prefix="compare-audit-"))
    try:
        url = f"sqlite:///{work / 'identity.db'}"
        os.environ.update({"DATABASE_URL": url, "IDENTITY_DATA_DIR": str(work / "var"),
                           "SECRET_KEY": "compare-audit-secret", "BASE_URL": "http://localhost"})
        tree = import_tree(root)
        tree["upgrade"](url)
        lines = run_session(tree, url, args.name_id_format)
        for line in (lines if args.raw else normalized(lines, args.ids)):
            print(line, file=out)
        out.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
