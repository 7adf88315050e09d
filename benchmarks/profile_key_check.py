"""Where a key check's time goes, in one process: the WSGI app called directly, no server, no client.

    .venv/bin/python benchmarks/profile_key_check.py [--count 5000] [--profile] [--db-url URL]

Builds a small SQLite database (or uses `--db-url`, migrated), an org, a member's key and a gateway
credential, then calls `POST /api/v1/keys/verify` and the ceiling's `GET /` (benchmarks/ceiling_app.py)
`--count` times each through their WSGI callables, and prints the CPU per request of each. With
`--profile`, cProfile's top functions of the key check by cumulative time. Request logs go to
/dev/null (their formatting is counted, not the terminal).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
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
    args = parser.parse_args()

    from ceiling_app import app as ceiling

    from audit.actor import system_actor
    from identity import gateway, keys, orgs
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
    app = create_app({"DATABASE": db, "DATABASE_URL": url, "SECRET_KEY": "profile", "BASE_URL": "http://x"})
    logging.getLogger("identity").handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
    body = json.dumps({"key": key.secret}).encode()

    def verify() -> dict[str, Any]:
        return environ("POST", "/api/v1/keys/verify", body, authorization=f"Bearer {credential.secret}",
                       content_type="application/json")

    status, data = call(app, verify)
    assert status.startswith("200") and b'"valid":true' in data, (status, data)
    ceiling_ms = cpu_per_request(ceiling, lambda: environ("GET", "/"), args.count)
    verify_ms = cpu_per_request(app, verify, args.count)
    print(f"CPU per request, in process, {args.count} each ({db.dialect}): ceiling {ceiling_ms:.3f} ms, "
          f"key check {verify_ms:.3f} ms ({ceiling_ms / verify_ms:.0%} of the ceiling's rate)")
    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for the database
        profiler.enable()
        for _ in range(args.count):
            call(app, verify)
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        print(f"calls per check: {stats.total_calls / args.count:.0f}")  # type: ignore[attr-defined]
        stats.sort_stats("cumulative").print_stats(35)
        print(out.getvalue())
    db.dispose()


if __name__ == "__main__":
    main()
