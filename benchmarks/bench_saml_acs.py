"""ACS sign-ins per second in one process, signature checks included.

    .venv/bin/python -m benchmarks.bench_saml_acs [--count 500] [--postgres | --database-url URL]

Builds a migrated database (a temporary SQLite file unless --database-url names an empty
PostgreSQL database), an org trusting the test IdP, and N distinct signed responses (signed
before the clock starts: signing is the IdP's cost, not ours). Then it posts them to
/saml/<org>/acs through Flask's test client, one after another, and reports sign-ins per second
for two cases: returning members (the steady state) and first sign-ins with JIT provisioning
(user, role grants, seat, audit events). Each sign-in is the full path: XML pre-checks,
python3-saml strict validation with RSA-SHA256 verification, the extra checks, the replay cache
insert, the sign-in transaction with its audit event, and the session row.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit.actor import system_actor  # noqa: E402
from identity import orgs
from identity.db import Database  # noqa: E402
from identity.migrate import upgrade  # noqa: E402
from identity.web.app import create_app  # noqa: E402
from saml.cli import configure_org  # noqa: E402
from saml.connection import SpUrls  # noqa: E402
from tests.factories import provision  # noqa: E402
from tests.saml.idp import KeyPair, Options, TestIdP, post_form  # noqa: E402

BASE_URL = "http://localhost"


def _setup(url: str, count: int) -> tuple[Database, TestIdP, SpUrls]:
    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        new = orgs.create_org(session, system_actor("bench"), "Bench", owner_email="owner@bench.test")
    idp = TestIdP("https://idp.example.test/metadata", KeyPair.make("bench idp"))
    configure_org(db, new.org.slug, idp.metadata(), jit=True, allow_idp_initiated=True)
    for i in range(count):
        provision(db, system_actor("bench"), new.org.id, f"member{i}@bench.test")
    return db, idp, SpUrls.of(BASE_URL, new.org.slug)


def _run(client, slug: str, forms: list[dict]) -> tuple[float, float]:
    """Post every form; return sign-ins per wall-clock second and per second of this process's CPU."""
    # Encoded before the clock starts: URL-encoding the form is the browser's work, not the ACS's.
    bodies = [urlencode(form) for form in forms]
    started, cpu = time.perf_counter(), time.process_time()
    for body in bodies:
        answer = client.post(f"/saml/{slug}/acs", data=body, content_type="application/x-www-form-urlencoded")
        if answer.status_code != 303:
            raise SystemExit(f"sign-in failed: {answer.status_code} {answer.data[:300]!r}")
    return len(forms) / (time.perf_counter() - started), len(forms) / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--postgres", action="store_true", help="on a throwaway local PostgreSQL cluster")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-saml-"))
    cluster = None
    if args.postgres:
        from tests.pgcluster import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
    url = args.database_url or (cluster.create_database("bench") if cluster else f"sqlite:///{folder / 'bench.db'}")
    try:
        db, idp, urls = _setup(url, args.count)
        app = create_app({"DATABASE": db, "DATABASE_URL": url, "SECRET_KEY": "bench", "BASE_URL": BASE_URL})
        import logging

        logging.getLogger("identity.http").setLevel(logging.WARNING)
        client = app.test_client()
        slug = urls.entity_id.split("/")[-2]

        def forms(prefix: str) -> list[dict]:
            return [post_form(idp.response(urls.entity_id, urls.acs, Options(name_id=f"{prefix}{i}@bench.test")))
                    for i in range(args.count)]

        _run(client, slug, [post_form(idp.response(urls.entity_id, urls.acs, Options(name_id="warm@bench.test")))])
        returning = _run(client, slug, forms("member"))
        jit = _run(client, slug, forms("new"))
        backend = db.dialect
        print(f"ACS sign-ins per second, one process, {backend}, {args.count} each:")
        for label, (wall, cpu) in (("returning members", returning), ("first sign-in, JIT", jit)):
            print(f"  {label:18}: {wall:6.1f}/s wall clock, {cpu:6.1f}/s per core of CPU "
                  f"({1000 / cpu:.2f} ms CPU each)")
        db.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
