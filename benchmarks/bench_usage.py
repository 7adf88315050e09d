"""Team wallets under load (issue 18): exactness with 16 gateways and kill -9, and debit throughput.

    .venv/bin/python benchmarks/bench_usage.py exactness [--db postgresql] [--gateways 16] [--workers 4]
                                                         [--seconds 20] [--kill-every 5]
    .venv/bin/python benchmarks/bench_usage.py throughput [--db postgresql] [--clients 8] [--workers 2]
                                                          [--teams 1000] [--seconds 10]

exactness: one team with a balance and a lower spending limit (`--balance`, `--limit`; by default
the limit is reached after about 200 debits, and with `--limit 0` the balance runs out instead);
`--gateways` client processes post usage back to back (a random cost each, a fresh request id each),
while the whole gunicorn (master and every worker) is killed with SIGKILL every `--kill-every`
seconds and started again. A gateway that loses its connection or gets a 5xx retries the same
request id until it gets 200 (debited or duplicate) or 429. At the end the database must hold
exactly what the gateways saw: the usage rows' request ids are the accepted ones, their sum is what
the gateways were told was debited, the balance never went below zero, the limit is not passed,
`identity billing check` agrees.

throughput: the ceiling (benchmarks/ceiling_app.py, `GET /` of a trivial Flask app) and
`POST /api/v1/usage` (one record per call) under the same gunicorn settings and the same client:
into one hot team, then spread over `--teams` teams (a random key of a random team per call) of
`--orgs` orgs (default 1: every debit then also queues on the one org's audit chain head), each
also in batches of `--batch` records. And the floor, in the same run: the same single records
posted to benchmarks/bare_app.py's `POST /bare/usage`, a plain Flask app that does only the
database work of an accepted debit with hand-written SQL (benchmarks/raw_sql.py `debit`), served
the same way: what share of the ceiling an implementation of one debit per call with the service's
statements can reach here; on PostgreSQL also that debit in two statements (`debit_fused`, the
fewest this schema and its audit chain allow: one read that locks, one write).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scim import Server, _identity, _pct, machine_busy  # noqa: E402
from harness import bench_database  # noqa: E402

BIG = 10**14  # a balance no run exhausts (throughput)


def seed_teams(url: str, org_id: str, owner_id: str, teams: int, balance: int) -> list[str]:
    """Bulk-insert `teams` teams, a key of the owner in each, and a wallet topped up with `balance`
    (its ledger row included, so the balance stays its ledger's sum); return the keys' ids."""
    from sqlalchemy import insert

    from identity import tokens
    from identity.db import Database
    from identity.models import ApiKey, Org, Team
    from identity.wallet_models import Wallet, WalletEntry
    from identity.wallet_periods import period_at

    db = Database(url)
    now = dt.datetime.now(dt.UTC)
    with db.begin() as conn:
        created = conn.execute(Org.__table__.select().where(Org.__table__.c.id == org_id)).one().created_at
        start = period_at(created if created.tzinfo else created.replace(tzinfo=dt.UTC), now)[0]
        rows_t, rows_k, rows_w, rows_e, key_ids = [], [], [], [], []
        for i in range(teams):
            team_id, key_id = f"bench-{i:05d}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
            rows_t.append({"id": team_id, "org_id": org_id, "name": f"Bench {team_id}", "name_key": f"bench {team_id}",
                           "created_at": now,
                           "is_default": False})
            rows_k.append({"id": key_id, "org_id": org_id, "team_id": team_id, "user_id": owner_id, "name": "b",
                           "prefix": tokens.generate("key").prefix, "secret_hash": "0" * 64, "scopes": ["inference"],
                           "status": "active", "status_reason": None, "created_at": now, "last_used_at": None})
            rows_w.append({"team_id": team_id, "org_id": org_id, "balance_micros": balance, "period_start": start,
                           "period_spend_micros": 0, "discount_percent": 0, "created_at": now, "updated_at": now})
            rows_e.append({"org_id": org_id, "team_id": team_id, "kind": "top_up", "amount_micros": balance,
                           "reference": "bench", "period_start": start, "actor_type": "system", "actor_id": "bench",
                           "created_at": now})
            key_ids.append(key_id)
        for table, rows in ((Team, rows_t), (ApiKey, rows_k), (Wallet, rows_w), (WalletEntry, rows_e)):
            conn.execute(insert(table.__table__), rows)
    db.dispose()
    return key_ids


def set_limit(url: str, team_id: str, limit: int | None) -> None:
    from sqlalchemy import update

    from identity.db import Database
    from identity.wallet_models import Wallet

    db = Database(url)
    with db.begin() as conn:
        conn.execute(update(Wallet.__table__).where(Wallet.__table__.c.team_id == team_id)
                     .values(spend_limit_micros=limit))
    db.dispose()


def _post(conn: http.client.HTTPConnection, credential: str, record: dict[str, Any],
          path: str = "/api/v1/usage") -> tuple[int, bytes]:
    conn.request("POST", path, body=json.dumps(record).encode(),
                 headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def _gateway(job: dict[str, Any]) -> dict[str, Any]:
    """One gateway: records back to back; a lost answer is retried with the same request id."""
    rng = random.Random(job["seed"])
    conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=30)
    accepted: dict[str, int] = {}
    refused, retries, n = 0, 0, 0
    while time.time() < job["end"]:
        n += 1
        record = {"key_id": rng.choice(job["keys"]), "model": "bench", "cost_micros": rng.randint(500, 1500),
                  "request_id": f"{job['seed']}-{n}"}
        while True:
            try:
                status, body = _post(conn, job["credential"], record)
            except (OSError, http.client.HTTPException):
                conn.close()
                retries += 1
                time.sleep(0.05)
                if time.time() > job["end"] + 120:
                    raise SystemExit("the server did not come back") from None
                continue
            if status == 200:
                accepted[record["request_id"]] = json.loads(body)["debited_micros"]
                break
            if status == 429:
                refused += 1
                break
            retries += 1  # a 5xx while the server restarts: retry the same request id
            time.sleep(0.05)
    conn.close()
    return {"accepted": accepted, "refused": refused, "retries": retries}


def _loader(job: dict[str, Any]) -> dict[str, Any]:
    """One throughput client: one keep-alive connection, requests back to back until the window ends."""
    rng = random.Random(job["seed"])
    conn = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=60)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    n = 0
    while (started := time.time()) < job["end"]:
        n += 1
        if job["kind"] == "ceiling":
            conn.request("GET", "/")
            response = conn.getresponse()
            status, _ = response.status, response.read()
        else:
            records = [{"key_id": rng.choice(job["keys"]), "model": "m", "cost_micros": 1000,
                        "request_id": f"{job['seed']}-{n}-{i}"} for i in range(job["batch"])]
            status, _ = _post(conn, job["credential"], records[0] if job["batch"] == 1 else {"usage": records},
                              job.get("path", "/api/v1/usage"))
        if started >= job["start"]:
            latencies.append(time.time() - started)
            statuses[status] = statuses.get(status, 0) + 1
    conn.close()
    return {"latencies": latencies, "statuses": statuses, "made": n}


def load(kind: str, server: Server, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    start = time.time() + 1.0
    end = start + args.seconds
    jobs = [{"kind": kind, "port": server.port, "start": start, "end": end, "seed": 1000 * n + random.randint(0, 999),
             "batch": 1, **extra} for n in range(args.clients)]
    cpu_before = server.cpu_seconds()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        results = pool.map(_loader, jobs)
    cpu = server.cpu_seconds() - cpu_before
    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[int, int] = {}
    for r in results:
        for code, count in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    return {"per_second": len(latencies) / args.seconds,
            "debits_per_second": len(latencies) * jobs[0]["batch"] / args.seconds,
            "p50_ms": _pct(latencies, 0.5) * 1000,
            "p99_ms": _pct(latencies, 0.99) * 1000, "statuses": statuses,
            "server_cpu_ms_per_request": 1000 * cpu / max(1, sum(r["made"] for r in results))}


def _setup(url: str, folder: Path) -> tuple[dict[str, str], dict[str, Any], str]:
    env = {"DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-32-characters-long", "BASE_URL": "http://127.0.0.1",
           "IDENTITY_DATA_DIR": str(folder / "data")}
    made = _identity(env, "org", "create", "Bench", "--slug", "bench", "--json")
    if made.returncode != 0:
        raise SystemExit(f"identity org create failed:\n{made.stdout}\n{made.stderr}")
    gateway = _identity(env, "gateway", "credential", "create", "--json")
    return env, json.loads(made.stdout), json.loads(gateway.stdout.splitlines()[0])["credential"]


def _kill(server: Server) -> None:
    """SIGKILL the gunicorn master and every worker at once: nothing gets to finish or roll back."""
    assert server.proc is not None
    for pid in [server.proc.pid, *server.worker_pids()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()


def exactness(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    env, org, credential = _setup(url, folder)
    balance, limit = args.balance, args.limit or None  # debits cost 500 to 1,500: the defaults end in ~200
    keys = seed_teams(url, org["org"]["id"], org["owner"]["id"], 1, balance)
    with Server("wsgi:app", env, args, folder / "gunicorn-app.log") as server:
        team_id = _team_of(url, keys[0])
        set_limit(url, team_id, limit)
        end = time.time() + args.seconds
        jobs = [{"port": server.port, "end": end, "seed": n + 1, "keys": keys, "credential": credential}
                for n in range(args.gateways)]
        kills = 0
        with multiprocessing.get_context("fork").Pool(args.gateways) as pool:
            pending = pool.map_async(_gateway, jobs)
            while args.kill_every and not pending.ready() and time.time() < end - 1:
                time.sleep(args.kill_every)
                _kill(server)
                kills += 1
                server.__enter__()  # the same command, the same port
            results = pending.get()
    return {"kills": kills, **_verify(env, url, org, team_id, balance, limit, results)}


def _team_of(url: str, key_id: str) -> str:
    from identity.db import Database
    from identity.models import ApiKey

    db = Database(url)
    with db.reading() as session:
        team_id = str(session.get_one(ApiKey, key_id).team_id)
    db.dispose()
    return team_id


def _verify(env: dict[str, str], url: str, org: dict[str, Any], team_id: str, balance: int, limit: int | None,
            results: list[dict[str, Any]]) -> dict[str, Any]:
    from sqlalchemy import select

    from identity.db import Database
    from identity.wallet_models import Wallet, WalletEntry

    accepted = {rid: debit for r in results for rid, debit in r["accepted"].items()}
    db = Database(url)
    with db.reading() as session:
        rows = dict(session.execute(select(WalletEntry.request_id, WalletEntry.amount_micros).where(
            WalletEntry.team_id == team_id, WalletEntry.kind == "usage")).all())
        wallet = session.get_one(Wallet, team_id)
    db.dispose()
    check = _identity(env, "billing", "check", "--org", org["org"]["slug"])
    return {"accepted": len(accepted), "refused": sum(r["refused"] for r in results),
            "retries": sum(r["retries"] for r in results), "ledger_rows": len(rows),
            "same_request_ids": set(rows) == set(accepted),
            "ledger_sum_equals_accepted": -sum(rows.values()) == sum(accepted.values()),
            "balance": wallet.balance_micros, "balance_ok": wallet.balance_micros == balance - sum(accepted.values())
            and wallet.balance_micros >= 0, "period_spend": wallet.period_spend_micros, "limit": limit,
            "limit_overrun": max(0, wallet.period_spend_micros - limit) if limit else None,
            "billing_check": check.returncode == 0, "billing_check_output": check.stdout[-500:]}


def throughput(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    env, org, credential = _setup(url, folder)
    owners = [(org["org"]["id"], org["owner"]["id"])]
    for n in range(1, args.orgs):  # more orgs: each org's audit chain takes its usage events one at a time
        made = json.loads(_identity(env, "org", "create", f"Bench {n}", "--slug", f"bench-{n}", "--json").stdout)
        owners.append((made["org"]["id"], made["owner"]["id"]))
    keys = [key for n, (org_id, owner_id) in enumerate(owners)
            for key in seed_teams(url, org_id, owner_id, args.teams // len(owners) + (n < args.teams % len(owners)),
                                  BIG)]
    hot = seed_teams(url, org["org"]["id"], org["owner"]["id"], 1, BIG)
    figures: dict[str, Any] = {"busy_before": machine_busy()}
    with Server("ceiling_app:app", env, args, folder / "gunicorn-ceiling.log", pythonpath="benchmarks",
                ready_path="/") as ceiling, Server("wsgi:app", env, args, folder / "gunicorn-app.log") as server, \
            Server("bare_app:app", env, args, folder / "gunicorn-bare.log", pythonpath="benchmarks",
                   ready_path="/") as bare:
        figures["ceiling"] = load("ceiling", ceiling, args)
        figures["hot"] = load("usage", server, args, keys=hot, credential=credential)
        figures["spread"] = load("usage", server, args, keys=keys, credential=credential)
        # The floor: the same single records debited by hand-written SQL in a plain Flask app (bare_app).
        figures["bare_hot"] = load("usage", bare, args, keys=hot, credential=credential, path="/bare/usage")
        figures["bare_spread"] = load("usage", bare, args, keys=keys, credential=credential, path="/bare/usage")
        if args.db == "postgresql":  # and in the fewest statements this schema allows (raw_sql.debit_fused)
            figures["fused_hot"] = load("usage", bare, args, keys=hot, credential=credential,
                                        path="/bare/usage-fused")
            figures["fused_spread"] = load("usage", bare, args, keys=keys, credential=credential,
                                           path="/bare/usage-fused")
        if args.batch > 1:
            figures["hot_batched"] = load("usage", server, args, keys=hot, credential=credential, batch=args.batch)
            figures["spread_batched"] = load("usage", server, args, keys=keys, credential=credential,
                                             batch=args.batch)
        figures["ceiling_again"] = load("ceiling", ceiling, args)
    return figures


def report(mode: str, args: argparse.Namespace, f: dict[str, Any]) -> str:
    load_avg = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    head = (f"{mode} on {args.db}: {args.workers} gunicorn workers ({args.worker_class}, {args.threads} threads); "
            f"{load_avg}")
    if mode == "exactness":
        return head + "\n" + "\n".join(f"  {k}: {v}" for k, v in f.items())
    ceiling = (f["ceiling"]["per_second"] + f["ceiling_again"]["per_second"]) / 2
    lines = [head + f"; {args.clients} clients, {args.seconds:.0f} s per run; "
             f"other load before: {f['busy_before']:.0%}"]
    rows = [("ceiling (GET / trivial Flask)", "ceiling"), ("POST /api/v1/usage, one hot team", "hot"),
            (f"POST /api/v1/usage, {args.teams} teams/{args.orgs} orgs", "spread"), ("ceiling again", "ceiling_again")]
    if "bare_hot" in f:
        rows[3:3] = [("floor (bare_app, hand-written SQL), hot", "bare_hot"),
                     (f"floor (bare_app), {args.teams} teams", "bare_spread")]
    if "fused_hot" in f:
        rows[5:5] = [("floor in two statements, hot", "fused_hot"),
                     (f"floor in two statements, {args.teams} teams", "fused_spread")]
    if "hot_batched" in f:
        rows[3:3] = [(f"batches of {args.batch}, one hot team", "hot_batched"),
                     (f"batches of {args.batch}, {args.teams} teams/{args.orgs} orgs", "spread_batched")]
    for label, key in rows:
        r = f[key]
        lines.append(f"  {label:36} {r['per_second']:8.0f}/s  {100 * r['per_second'] / ceiling:5.1f}% of ceiling  "
                     f"debits {r['debits_per_second']:.0f}/s ({100 * r['debits_per_second'] / ceiling:.0f}%)  "
                     f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                     f"CPU {r['server_cpu_ms_per_request']:.2f} ms/req  statuses {r['statuses']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", choices=("exactness", "throughput"))
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--gateways", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--teams", type=int, default=1000)
    parser.add_argument("--orgs", type=int, default=1, help="throughput: spread the teams over this many orgs")
    parser.add_argument("--batch", type=int, default=100, help="throughput: also post batches of this many records")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--balance", type=int, default=250_000, help="exactness: the team's balance (micro-cents)")
    parser.add_argument("--limit", type=int, default=200_000, help="exactness: the period limit (0: none)")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers; default 4 for exactness (more processes racing and killed), 2 for "
                             "throughput (as `identity serve` runs them by default: on 2 cores, 4 workers made "
                             "one-record debits slower, 270 against 376-434/s on 2026-12-07)")
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_file", default=None)
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 4 if args.mode == "exactness" else 2
    with bench_database(args.db, "bench-usage-") as (folder, url):
        figures = (exactness if args.mode == "exactness" else throughput)(args, folder, url)
        print(report(args.mode, args, figures))
        if args.json_file:
            Path(args.json_file).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
