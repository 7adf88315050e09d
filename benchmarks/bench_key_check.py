"""The gateway's key check under gunicorn, against a trivial Flask route served and loaded the same way.

    .venv/bin/python benchmarks/bench_key_check.py --db sqlite|postgresql [--members 100000] [--keys 200000]
                                                   [--clients 4] [--seconds 10] [--json FILE]

1. Builds a database (a temporary SQLite file, or a throwaway PostgreSQL cluster on 127.0.0.1 from
   tests/pgcluster.py); `identity org create --json` makes the org, `identity gateway credential
   create --json` the gateway's credential.
2. Seeds the members (user row, org and Default-team grants, a seat) and their keys (two each by
   default) with bulk INSERTs, as benchmarks/bench_scim.py does; then gathers planner statistics
   (ANALYZE) as the service has them.
3. Serves benchmarks/ceiling_app.py and wsgi:app with gunicorn as `identity serve` runs it (2
   gthread workers, 1 thread each; the service with identity.web.metrics_serve's hooks, so that its
   counters are prometheus_client's multiprocess ones), and loads each with the same client (`--clients` processes,
   one keep-alive connection each, requests back to back): the ceiling (`GET /`), then
   `POST /api/v1/keys/verify` with a random one of 5,000 seeded keys per request, then today's
   `GET /api/v1/key` for comparison. The ceiling is measured right before each run.
4. Counts the rows written while the key check ran: on PostgreSQL from pg_stat_user_tables
   (inserts + updates + deletes, read after the statistics are flushed), on SQLite from the
   row counts of every table, the keys' last-used times and the WAL's size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scim import Server, _identity, _pct, machine_busy  # noqa: E402
from harness import bench_database  # noqa: E402

SAMPLE = 5000  # keys the client presents, drawn from every seeded key


def seed(url: str, org_id: str, team_id: str, args: argparse.Namespace) -> list[str]:
    """Bulk-insert members and their keys; return a random sample of the keys' secrets."""
    from sqlalchemy import insert, update

    from identity import tokens
    from identity.db import Database
    from identity.models import ApiKey, Org, RoleGrant, User
    from identity.names import name_key

    db = Database(url)
    per_member = max(1, args.keys // args.members)
    base = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    rng = random.Random(16)
    sample_at = set(rng.sample(range(args.keys), min(SAMPLE, args.keys)))
    sample: list[str] = []
    batch, k = 5000, 0
    with db.begin() as conn:
        for first in range(0, args.members, batch):
            users, grants, keys = [], [], []
            for i in range(first, min(args.members, first + batch)):
                user_id, name = str(uuid.uuid4()), f"member{i}@bench.test"
                users.append({"id": user_id, "org_id": org_id, "user_name": name, "user_name_key": name_key(name),
                              "email": name, "external_id": f"ext-{i}", "display_name": f"Member {i}",
                              "given_name": "Bench", "family_name": f"Member {i}", "active": True, "has_seat": True,
                              "source": "scim", "attributes": {"userName": name}, "created_at": base,
                              "updated_at": base, "deleted_at": None, "version": 1})
                for team in (None, team_id):
                    grants.append({"org_id": org_id, "user_id": user_id, "team_id": team, "role": "member",
                                   "source": "scim", "source_ref": "", "created_at": base})
                for _ in range(per_member):
                    new = tokens.generate("key")
                    keys.append({"id": str(uuid.uuid4()), "org_id": org_id, "team_id": team_id, "user_id": user_id,
                                 "name": "bench", "prefix": new.prefix, "secret_hash": new.hash,
                                 "scopes": ["inference"], "status": "active", "status_reason": None,
                                 "created_at": base, "last_used_at": None})
                    if k in sample_at:
                        sample.append(new.plaintext)
                    k += 1
            conn.execute(insert(User.__table__), users)
            conn.execute(insert(RoleGrant.__table__), grants)
            conn.execute(insert(ApiKey.__table__), keys)
        conn.execute(update(Org.__table__).where(Org.__table__.c.id == org_id)
                     .values(seats_used=Org.__table__.c.seats_used + args.members))
    _analyze(db)
    db.dispose()
    return sample


def _analyze(db: Any) -> None:
    from sqlalchemy import text

    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    else:
        db.analyze()
        raw = db.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def _client(job: dict[str, Any]) -> dict[str, Any]:
    """One client process: one keep-alive connection, requests back to back until the window ends."""
    port, kind = job["port"], job["kind"]
    rng = random.Random(job["seed"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    made = 0
    while (started := time.time()) < job["end"]:
        secret = rng.choice(job["sample"]) if job["sample"] else ""
        if kind == "verify":
            conn.request("POST", "/api/v1/keys/verify", body=json.dumps({"key": secret}).encode(),
                         headers={"Authorization": f"Bearer {job['credential']}", "Content-Type": "application/json"})
        elif kind == "whoami":
            conn.request("GET", "/api/v1/key", headers={"Authorization": f"Bearer {secret}"})
        else:
            conn.request("GET", "/")
        response = conn.getresponse()
        data = response.read()
        made += 1
        if started >= job["start"]:
            latencies.append(time.time() - started)
            statuses[response.status] += 1
            if (response.status != 200 or (kind == "verify" and b'"valid":true' not in data.replace(b" ", b""))) \
                    and len(bad) < 3:
                bad.append(f"{response.status} {data[:200]!r}")
    conn.close()
    return {"latencies": latencies, "statuses": dict(statuses), "bad": bad, "made": made}


def load(kind: str, server: Server, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    start = time.time() + 0.5 + args.warmup
    end = start + args.seconds
    jobs = [{"kind": kind, "port": server.port, "start": start, "end": end, "seed": 100 * n + 1, **extra}
            for n in range(args.clients)]
    cpu_before = server.cpu_seconds()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        results = pool.map(_client, jobs)
    cpu = server.cpu_seconds() - cpu_before
    latencies = [x for r in results for x in r["latencies"]]
    statuses: Counter[int] = Counter()
    for r in results:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
    return {"requests": len(latencies), "per_second": len(latencies) / args.seconds,
            "p50_ms": _pct(latencies, 0.5) * 1000, "p99_ms": _pct(latencies, 0.99) * 1000,
            "statuses": dict(statuses), "bad": [b for r in results for b in r["bad"]][:3],
            "made": sum(r["made"] for r in results),
            "server_cpu_ms_per_request": 1000 * cpu / max(1, sum(r["made"] for r in results))}


def written(url: str, folder: Path) -> dict[str, Any]:
    """What the database has had written so far: comparable before and after a run."""
    from sqlalchemy import text

    from identity.db import Database

    db = Database(url)
    try:
        with db.engine.connect() as conn:
            if db.dialect == "postgresql":
                row = conn.execute(text("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
                                        "FROM pg_stat_user_tables")).scalar_one()
                return {"rows": int(row)}
            tables = [r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
            counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
            used = conn.execute(text("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL")).scalar_one()
            wal = Path(f"{folder / 'bench.db'}-wal")
            return {"counts": counts, "last_used_set": used, "wal_bytes": wal.stat().st_size if wal.exists() else 0}
    finally:
        db.dispose()


def rows_written(before: dict[str, Any], after: dict[str, Any]) -> int:
    if "rows" in before:
        return after["rows"] - before["rows"]
    changed = sum(abs(after["counts"][t] - before["counts"].get(t, 0)) for t in after["counts"])
    return changed + after["last_used_set"] - before["last_used_set"] + (after["wal_bytes"] != before["wal_bytes"])


def bench(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    env = {"DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-32-characters-long", "BASE_URL": "http://127.0.0.1",
           "IDENTITY_DATA_DIR": str(folder / "data")}
    made = _identity(env, "org", "create", "Bench", "--slug", "bench", "--json",
                     "--included-seats", str(args.members + 10))
    if made.returncode != 0:
        raise SystemExit(f"identity org create failed:\n{made.stdout}\n{made.stderr}")
    org = json.loads(made.stdout)
    gateway = _identity(env, "gateway", "credential", "create", "--json")
    if gateway.returncode != 0:
        raise SystemExit(f"identity gateway credential create failed:\n{gateway.stderr}")
    credential = json.loads(gateway.stdout.splitlines()[0])["credential"]
    print(f"seeding {args.members} members and {args.keys} keys into {args.db} ...", flush=True)
    started = time.perf_counter()
    sample = seed(url, org["org"]["id"], org["org"]["default_team_id"], args)
    figures: dict[str, Any] = {"db": args.db, "members": args.members, "keys": args.keys, "clients": args.clients,
                               "workers": args.workers, "seconds": args.seconds,
                               "seed_seconds": round(time.perf_counter() - started, 1)}
    figures["busy_before"] = machine_busy()
    figures["load_average_before"] = os.getloadavg()
    service = Server("wsgi:app", env, args, folder / "gunicorn-app.log")
    # As `identity serve` runs it: /metrics summed over the workers (PROMETHEUS_MULTIPROC_DIR and its hooks).
    service.cmd[1:1] = ["--config", "python:identity.web.metrics_serve"]
    with Server("ceiling_app:app", env, args, folder / "gunicorn-ceiling.log", pythonpath="benchmarks",
                ready_path="/") as ceiling, service as server:
        figures["ceiling"] = load("ceiling", ceiling, args, sample=[])
        time.sleep(1.5)
        before = written(url, folder)
        figures["verify"] = load("verify", server, args, sample=sample, credential=credential)
        time.sleep(1.5)  # PostgreSQL flushes its table statistics at most once a second
        after = written(url, folder)
        figures["rows_written"] = rows_written(before, after)
        figures["rows_written_per_check"] = figures["rows_written"] / max(1, figures["verify"]["made"])
        figures["ceiling_again"] = load("ceiling", ceiling, args, sample=[])
        figures["whoami"] = load("whoami", server, args, sample=sample)
    figures["load_average_after"] = os.getloadavg()
    return figures


def report(f: dict[str, Any]) -> str:
    ceiling = (f["ceiling"]["per_second"] + f["ceiling_again"]["per_second"]) / 2
    lines = [f"key check on {f['db']}: {f['members']:,} members, {f['keys']:,} keys; {f['clients']} clients, "
             f"{f['workers']} gunicorn workers, {f['seconds']:.0f} s per run; other load before: "
             f"{f['busy_before']:.0%}; load average (1, 5, 15 min) before "
             f"{', '.join(f'{x:.1f}' for x in f['load_average_before'])}, after "
             f"{', '.join(f'{x:.1f}' for x in f['load_average_after'])}"]
    for label, key in (("ceiling (GET / trivial Flask)", "ceiling"), ("POST /api/v1/keys/verify", "verify"),
                       ("ceiling again", "ceiling_again"), ("GET /api/v1/key (for comparison)", "whoami")):
        r = f[key]
        lines.append(f"  {label:36} {r['per_second']:8.0f}/s  {100 * r['per_second'] / ceiling:5.1f}% of ceiling  "
                     f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                     f"CPU {r['server_cpu_ms_per_request']:.2f} ms/req  statuses {r['statuses']}"
                     + (f"  BAD {r['bad']}" if r["bad"] else ""))
    lines.append(f"  rows written while the key check ran: {f['rows_written']} "
                 f"({f['rows_written_per_check']:.4f} per check over {f['verify']['made']} checks)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), required=True)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_file", default=None)
    args = parser.parse_args()
    with bench_database(args.db, "bench-keycheck-") as (folder, url):
        figures = bench(args, folder, url)
        print()
        print(report(figures))
        if args.json_file:
            Path(args.json_file).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
