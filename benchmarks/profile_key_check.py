"""Where a key check's or a usage debit's time goes, in one process: the WSGI app called directly.

    .venv/bin/python benchmarks/profile_key_check.py [--count 5000] [--profile] [--usage] [--db postgresql]

Builds a small SQLite database (or a throwaway PostgreSQL cluster with `--db postgresql`, or uses
`--db-url`, migrated), an org, a member's key and a gateway credential, then calls
`POST /api/v1/keys/verify` (with `--usage`: `POST /api/v1/usage`, one record per call, a new
request id each, into the key's team) and the ceiling's `GET /` (benchmarks/ceiling_app.py)
`--count` times each through their WSGI callables, and prints the CPU per request of each and the
SQL statements per request. With `--profile`, cProfile's top functions by cumulative time. Request
logs go to /dev/null (their formatting is counted, not the terminal). No server and no client: only
the service's own work (and the driver's) is counted, not the database server's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def environ(method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
           "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
           "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
           "wsgi.run_once": False, "wsgi.version": (1, 0), "CONTENT_LENGTH": str(len(body))}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = value
    return env


def call(app: Any, make: Any) -> tuple[str, bytes]:
    status: list[str] = []
    chunks = app(make(), lambda s, h, exc=None: status.append(s))
    try:
        data = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return status[0], data


def cpu_per_request(app: Any, make: Any, count: int) -> float:
    call(app, make)
    started = time.process_time()
    for _ in range(count):
        call(app, make)
    return (time.process_time() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"))
    parser.add_argument("--callers", default=None, help="with --profile: who calls the functions matching this")
    parser.add_argument("--usage", action="store_true", help="profile POST /api/v1/usage instead of the key check")
    args = parser.parse_args()
    if args.db == "postgresql" and not args.db_url:
        from tests.pgcluster import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        try:
            args.db_url = cluster.create_database("profile")
            profile(args)
        finally:
            cluster.stop()
    else:
        profile(args)


def profile(args: argparse.Namespace) -> None:

    from ceiling_app import app as ceiling
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from audit import Actor
    from audit.actor import system_actor
    from identity import gateway, keys, orgs, wallets
    from identity.db import Database
    from identity.migrate import upgrade
    from identity.web.app import create_app

    url = args.db_url or f"sqlite:///{tempfile.mkdtemp(prefix='profile-keycheck-')}/p.db"
    upgrade(url)
    db = Database(url)
    system = system_actor("profile")
    with db.transaction() as session:
        org = orgs.create_org(session, system, "Profile", owner_email="owner@profile.test")
        key = keys.create_api_key(session, system, org.org.id, user_id=org.owner.id, team_id=org.default_team_id,
                                  name="p", scopes=["inference"])
        credential = gateway.create_credential(session, system)
        owner = Actor(type="user", id=org.owner.id, display="owner", org_id=org.org.id, role="owner")
        wallets.top_up(session, owner, org.org.id, org.default_team_id, 10**15, "profile")
    app = create_app({"DATABASE": db, "DATABASE_URL": url, "SECRET_KEY": "profile", "BASE_URL": "http://x"})
    logging.getLogger("identity").handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
    body = json.dumps({"key": key.secret}).encode()
    ids = iter(range(10**9))

    def verify() -> dict[str, Any]:
        if args.usage:
            record = {"key_id": key.id, "model": "gpt-profile", "cost_micros": 1234,
                      "request_id": f"profile-{next(ids)}"}
            return environ("POST", "/api/v1/usage", json.dumps(record).encode(),
                           authorization=f"Bearer {credential.secret}", content_type="application/json")
        return environ("POST", "/api/v1/keys/verify", body, authorization=f"Bearer {credential.secret}",
                       content_type="application/json")

    status, data = call(app, verify)
    assert status.startswith("200") and (b'"debited"' if args.usage else b'"valid":true') in data, (status, data)
    statements = [0]

    @event.listens_for(Engine, "after_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    ceiling_ms = cpu_per_request(ceiling, lambda: environ("GET", "/"), args.count)
    statements[0] = 0
    verify_ms = cpu_per_request(app, verify, args.count)
    what = "usage debit" if args.usage else "key check"
    print(f"CPU per request, in process, {args.count} each ({db.dialect}): ceiling {ceiling_ms:.3f} ms, "
          f"{what} {verify_ms:.3f} ms ({ceiling_ms / verify_ms:.0%} of the ceiling's rate), "
          f"{statements[0] / (args.count + 1):.1f} SQL statements through SQLAlchemy")
    if args.usage:  # the floor: the same debit as hand-written SQL in a plain Flask app (benchmarks/bare_app.py)
        os.environ["DATABASE_URL"] = url
        from bare_app import app as bare

        def bare_debit() -> dict[str, Any]:
            made = verify()
            made["PATH_INFO"] = "/bare/usage"
            return made

        status, data = call(bare, bare_debit)
        assert status.startswith("200"), (status, data)
        print(f"the floor's debit (benchmarks/bare_app.py): {cpu_per_request(bare, bare_debit, args.count):.3f} ms")
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for the database
        profiler.enable()
        for _ in range(args.count):
            call(app, verify)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        print(f"calls per check: {stats.total_calls / args.count:.0f}")  # type: ignore[attr-defined]
        stats.sort_stats(args.sort).print_stats(int(os.environ.get("PROFILE_TOP", "35")))
        if args.callers:
            stats.print_callers(args.callers)
        print(out.getvalue())
    db.dispose()


if __name__ == "__main__":
    main()
