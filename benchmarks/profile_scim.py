"""Where a SCIM request's time goes: create, filter, get, group and delete under cProfile, per request.

    .venv/bin/python benchmarks/profile_scim.py [--users 100000] [--requests 200] [--kinds filter] [--code DIR]

In one process, on a throwaway PostgreSQL cluster: migrate, create an org, bulk-load `--users`
users (benchmarks/bulk_load.py), ANALYZE, then run `--requests` of each kind through the Flask
test client (no HTTP server, so only the service's own work is counted): `POST /Users`,
`GET /Users?filter=userName eq`, `GET /Users/<id>`, `GET /Groups?excludedAttributes=members&filter=
displayName eq` (among 1,000 groups), `DELETE /Users/<id>`. For each it prints per request: Python
function calls, CPU (this process: the service's Python and the driver, not the database
server's), wall time, SQL statements, and the functions with the most own time (`--sort cumtime`:
with what they call); and before that, the CPU per request of as many requests again without the
profiler (cProfile doubles it).

`--code DIR` profiles another checkout of the service (e.g. `git archive main | tar -x -C DIR`),
to compare before and after a change with the same script and data.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
GROUPS = 1000  # with `--kinds group`


def run(args: argparse.Namespace) -> None:
    code = Path(args.code).resolve()
    sys.path[:0] = [str(code), str(HERE), str(HERE.parent)]
    from tests.pgcluster import PostgresCluster  # noqa: I001 - the path above decides whose code this is

    import bulk_load
    cluster = PostgresCluster()
    cluster.start()
    try:
        url = cluster.create_database("profile")
        folder = tempfile.mkdtemp(prefix="profile-scim-")
        os.environ.update(DATABASE_URL=url, SECRET_KEY="profile-secret-key-32-characters-long", BASE_URL="http://127.0.0.1",
                          IDENTITY_DATA_DIR=folder)
        import logging

        from sqlalchemy import event, text
        from sqlalchemy.engine import Engine

        from audit.actor import system_actor
        from identity import orgs, scim_credentials
        from identity.db import Database
        from identity.migrate import upgrade
        from identity.web.app import create_app

        upgrade(url)
        db = Database(url)
        with db.transaction() as session:
            made = orgs.create_org(session, system_actor("profile"), "Profile", owner_email="owner@profile.test",
                                   included_seats=args.users + 10 * args.requests)
            token = scim_credentials.create_scim_token(session, system_actor("profile"), made.org.id).secret
        with db.begin() as conn:
            base = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=30)
            bulk_load.load_users(conn, made.org.id, made.default_team_id, args.users, base)
            if "group" in args.kinds:  # groups of 10 to look up, as Entra does before each group change
                bulk_load.load_filler_groups(conn, made.org.id, GROUPS, 10, 0, args.users)
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        db.dispose()
        logging.disable(logging.INFO)
        statements = [0]

        @event.listens_for(Engine, "after_cursor_execute")
        def _count(*_: Any) -> None:
            statements[0] += 1

        app = create_app()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        rng = random.Random(5)
        victims = iter(rng.sample(range(args.users), 3 * args.requests))
        kinds = {
            "create": lambda i: client.post("/scim/v2/Users", headers=headers, data=json.dumps({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"new{i}@profile.test",
                "externalId": f"new-{i}", "name": {"givenName": "New", "familyName": f"User {i}"},
                "emails": [{"value": f"new{i}@profile.test", "type": "work", "primary": True}]})),
            "filter": lambda i: client.get("/scim/v2/Users?filter=" + quote(
                f'userName eq "user{rng.randrange(args.users)}@bench.test"'), headers=headers),
            "group": lambda i: client.get("/scim/v2/Groups?excludedAttributes=members&filter=" + quote(
                f'displayName eq "filler group {rng.randrange(1, GROUPS + 1)}"'), headers=headers),
            "get": lambda i: client.get(f"/scim/v2/Users/{bulk_load.user_id(rng.randrange(args.users))}",
                                        headers=headers),
            "delete": lambda i: client.delete(f"/scim/v2/Users/{bulk_load.user_id(next(victims))}", headers=headers),
        }
        for kind in args.kinds:
            call = kinds[kind]
            for i in range(args.requests // 4):  # warm: caches, prepared statements
                call(10_000_000 + i)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(args.requests):
                call(20_000_000 + i)
            cpu, wall = (1000 * (after - before) / args.requests
                         for after, before in ((time.process_time(), cpu), (time.perf_counter(), wall)))
            print(f"\n-- {kind}: without the profiler, per request: CPU {cpu:.2f} ms, wall {wall:.2f} ms "
                  "(with the database server's work)")
            profile, statements[0] = cProfile.Profile(time.process_time), 0  # CPU, not the wait for the database
            cpu, wall = time.process_time(), time.perf_counter()
            profile.enable()
            for i in range(args.requests):
                response = call(i)
                assert response.status_code < 300, (kind, response.status_code, response.data[:200])
            profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            stats = pstats.Stats(profile)
            if args.dump:
                stats.dump_stats(f"{args.dump}.{kind}")
            n = args.requests
            print(f"\n== {kind}: per request {stats.total_calls / n:,.0f} function calls, CPU {1000 * cpu / n:.2f} ms, "
                  f"wall {1000 * wall / n:.2f} ms, {statements[0] / n:.1f} SQL statements ({args.users:,} users)")
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.top)
            print("\n".join(line for line in out.getvalue().splitlines() if "/" in line or "ncalls" in line))
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumtime"), help="own time, or with callees")
    kinds = ("create", "filter", "get", "group", "delete")
    parser.add_argument("--kinds", nargs="+", choices=kinds, default=list(kinds))
    parser.add_argument("--dump", help="also write each kind's profile to DUMP.<kind> (pstats), to read its callers")
    parser.add_argument("--code", default=str(HERE.parent), help="the checkout whose service is profiled")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
