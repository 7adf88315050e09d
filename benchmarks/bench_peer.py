"""The service beside scim2-server and a trivial Flask route, loaded in one run (issue 19, "Performance").

    .venv/bin/python benchmarks/bench_peer.py [--users 40000] [--clients 4] [--seconds 8] [--json FILE]

Three servers, each under gunicorn with 2 gthread workers of 1 thread (as `identity serve` runs
the service), loaded one after another by `--clients` keep-alive client processes on the same
2 cores:

- the service (wsgi:app) on a throwaway PostgreSQL cluster (tests/pgcluster.py), `--users`
  users bulk-seeded as benchmarks/bench_scim.py seeds them, with a group of `--group` members;
- scim2-server 0.8.3 (python-scim's reference server, in memory; benchmarks/peer_app.py), in a
  virtualenv of its own that this script makes once in `--peer-venv` with the pinned
  versions below, preloaded with the same users and group through its own API before gunicorn
  forks (`--preload`), so both workers hold them;
- the ceiling (benchmarks/ceiling_app.py), measured before and after the others;
- the floor for the create, the lookup and the delete (benchmarks/bare_app.py): the same database
  work as hand-written SQL in a plain Flask app, on the service's database, served the same way:
  what any implementation on this stack could reach beside scim2-server;
- with create or delete among `--kinds`, the least durable write (bare_app's `POST /bare/write`:
  one INSERT and a COMMIT per request, no credential, no audit): a bound on any design that keeps
  its writes in this database, whatever statements it sends, beside scim2-server's create and delete.

Requests, the same on the service and the peer: `POST /Users` (a new user with an email),
`GET /Users?filter=userName eq "<random seeded user>"`, `DELETE /Users/<seeded id>` (each client
deletes its own share of the seeded users that no other request uses; a client that runs out
stops, and the report says so), a list page
(`GET /Users?startIndex=<random>&count=100`) and a group PATCH (each client adds one of its own
users to the group and removes it again, alternately, so the group keeps its size). Each figure
is reported as a ratio to scim2-server's and to the ceiling's throughput, with p50/p99 latency
and the workers' CPU per request; `uptime` is printed with them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench_scim import PATCH_OP, ROOT, SCIM_USER, Server, _identity, _pct, machine_busy, seed

PEER_PINS = ["scim2-server==0.8.3", "scim2-models==0.12.3", "pydantic==2.14.4", "gunicorn==27.0.1"]
KINDS = ("create", "lookup", "delete", "page", "group_patch")
TARGETS = {"create": 1.0, "lookup": 1.2, "delete": 1.0, "page": 2.0, "group_patch": 2.0}
FLOOR_KINDS = ("create", "lookup", "delete")  # what benchmarks/bare_app.py serves


def peer_venv(path: Path) -> Path:
    """Make (once) the peer's virtualenv with the pinned versions; return its bin directory."""
    bin_dir = path / "bin"
    if not (bin_dir / "gunicorn").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", *PEER_PINS],
                       check=True)
    return bin_dir


def _request(kind: str, job: dict[str, Any], rng: random.Random, i: int) -> tuple[str, str, bytes | None]:
    base, users = job["base"], job["users"]
    if job["target"] == "ceiling":
        return "GET", "/", None
    if kind == "create":
        name = f"new-{job['run']}-{job['index']}-{i}@bench.test"
        body = {"schemas": [SCIM_USER], "userName": name, "externalId": name, "displayName": f"New User {i}",
                "name": {"givenName": "New", "familyName": f"User {i}"}, "active": True,
                "emails": [{"value": name, "type": "work", "primary": True}]}
        return "POST", f"{base}/Users", json.dumps(body).encode()
    if kind == "lookup":
        name = f"user{rng.randrange(job['lookup_range'])}@bench.test"
        return "GET", f"{base}/Users?filter=" + quote(f'userName eq "{name}"'), None
    if kind == "page":
        return "GET", f"{base}/Users?startIndex={rng.randrange(1, job['lookup_range'] - 100)}&count=100", None
    if kind == "delete":
        return "DELETE", f"{base}/Users/{users[i]}", None
    if kind == "write":
        return "POST", f"{base}/write", b""
    member = users[(i // 2) % len(users)]  # added, then removed: each member can go round again
    operation = {"op": "add", "path": "members", "value": [{"value": member}]} if i % 2 == 0 else \
        {"op": "remove", "path": f'members[value eq "{member}"]'}
    body = {"schemas": [PATCH_OP], "Operations": [operation]}
    return "PATCH", f"{base}/Groups/{job['group']}", json.dumps(body).encode()


def _client(job: dict[str, Any]) -> dict[str, Any]:
    """One keep-alive connection, requests back to back until the window ends (or its ids run out)."""
    headers = {"Authorization": f"Bearer {job['token']}", "Content-Type": "application/scim+json",
               "Accept": "application/scim+json"}
    rng, conn = random.Random(job["seed"]), http.client.HTTPConnection("127.0.0.1", job["port"], timeout=120)
    latencies, bad, i, ran_out = [], [], 0, False
    while (started := time.time()) < job["end"]:
        if job["kind"] == "delete" and job["target"] != "ceiling" and i >= len(job["users"]):
            ran_out = True
            break
        method, path, body = _request(job["kind"], job, rng, i)
        i += 1
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if started >= job["start"]:
            latencies.append(time.time() - started)
            if not 200 <= response.status < 300 and len(bad) < 3:
                bad.append(f"{response.status} {data[:200]!r}")
    conn.close()
    # Requests per second over the part of the window this client was loading (all of it, unless its
    # ids ran out): a client that stops early does not pull the rate down.
    active = min(time.time(), job["end"]) - job["start"]
    return {"latencies": latencies, "bad": bad, "made": i, "ran_out": ran_out,
            "per_second": len(latencies) / active if active > 0 else 0.0}


def load(kind: str, target: str, server: Server, args: argparse.Namespace, **job: Any) -> dict[str, Any]:
    """Run the clients against one server for one kind of request; throughput, latency, CPU per request."""
    start = time.time() + 0.5 + args.warmup
    run = os.urandom(4).hex()
    users: list[str] = job.pop("users", [])
    jobs = [{"kind": kind, "target": target, "port": server.port, "start": start, "end": start + args.seconds,
             "seed": 97 * n + 5, "index": n, "run": run, "users": users[n::args.clients], **job}
            for n in range(args.clients)]
    cpu_before = server.cpu_seconds()
    with multiprocessing.get_context("fork").Pool(args.clients) as pool:
        results = pool.map(_client, jobs)
    cpu = server.cpu_seconds() - cpu_before
    latencies = [x for r in results for x in r["latencies"]]
    return {"per_second": sum(r["per_second"] for r in results), "p50_ms": _pct(latencies, 0.5) * 1000,
            "p99_ms": _pct(latencies, 0.99) * 1000, "requests": len(latencies),
            "bad": [b for r in results for b in r["bad"]][:3], "ran_out": any(r["ran_out"] for r in results),
            "cpu_ms": 1000 * cpu / max(1, sum(r["made"] for r in results))}


def _pools(ids: list[str], group_size: int, clients: int) -> tuple[list[str], list[str]]:
    """Users for the PATCHes (not in the group) and for the deletes (used by nothing else)."""
    patch = ids[group_size:group_size + 100 * clients]
    return patch, ids[group_size + 100 * clients:]


def bench(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    env = {"DATABASE_URL": url, "SECRET_KEY": "bench-secret-key-32-characters-long", "BASE_URL": "http://127.0.0.1",
           "IDENTITY_DATA_DIR": str(folder / "data")}
    made = _identity(env, "org", "create", "Bench", "--slug", "bench", "--json", "--included-seats", "10000000")
    org = json.loads(made.stdout)
    seed_args = argparse.Namespace(users=args.users, big_group=args.group, small_group=10)
    seeded = seed(url, org["org"]["id"], org["org"]["default_team_id"], seed_args)
    peer_bin = peer_venv(Path(args.peer_venv))
    peer_ids = folder / "peer_ids.json"
    peer_env = {"PEER_USERS": str(args.users), "PEER_GROUP_MEMBERS": str(args.group), "PEER_IDS": str(peer_ids),
                "PEER_TOKEN": "peer-token"}
    figures: dict[str, Any] = {"users": args.users, "group": args.group, "clients": args.clients,
                               "seconds": args.seconds, "busy_before": machine_busy()}
    print(f"seeded {args.users} users; CPU busy before the runs: {figures['busy_before']:.0%}", flush=True)
    gunicorn_args = argparse.Namespace(workers=2, worker_class="gthread", threads=1)
    peer = Server("peer_app:app", peer_env, gunicorn_args, folder / "gunicorn-peer.log",
                  pythonpath=str(ROOT / "benchmarks"), ready_path="/healthz")
    peer.cmd[0] = str(peer_bin / "gunicorn")
    peer.cmd.insert(1, "--preload")
    with Server("ceiling_app:app", env, gunicorn_args, folder / "gunicorn-ceiling.log",
                pythonpath="benchmarks", ready_path="/") as ceiling, \
            Server("wsgi:app", env, gunicorn_args, folder / "gunicorn-scim.log") as service, peer, \
            Server("bare_app:app", env, gunicorn_args, folder / "gunicorn-bare.log", pythonpath="benchmarks",
                   ready_path="/") as bare:
        ids = json.loads(peer_ids.read_text())
        sides = {"service": (service, {"base": "/scim/v2", "token": org["scim_token"],
                                       "group": seeded["groups"]["big"]["id"], "ids": seeded["ids"]}),
                 "peer": (peer, {"base": "/v2", "token": "peer-token", "group": ids["group"], "ids": ids["users"]}),
                 # The floor: the same database work by hand-written SQL in a plain Flask app (bare_app),
                 # deleting from the other end of the service's pool of users.
                 "floor": (bare, {"base": "/bare", "token": org["scim_token"], "group": "",
                                  "ids": seeded["ids"][:args.group + 100 * args.clients]
                                  + seeded["ids"][:args.group + 100 * args.clients - 1:-1]})}
        figures["ceiling"] = load("ceiling", "ceiling", ceiling, args, base="", token="", lookup_range=1)
        print(f"ceiling: {figures['ceiling']['per_second']:.0f}/s", flush=True)
        for kind in args.kinds:
            for name, (server, side) in sides.items():
                if name == "floor" and kind not in FLOOR_KINDS:
                    continue
                patch_pool, delete_pool = _pools(side["ids"], args.group, args.clients)
                users = {"delete": delete_pool, "group_patch": patch_pool}.get(kind, [])
                figures[f"{name}_{kind}"] = load(kind, name, server, args, base=side["base"], token=side["token"],
                                                 group=side["group"], users=users,
                                                 lookup_range=args.users if kind == "lookup" else args.group)
                r = figures[f"{name}_{kind}"]
                print(f"{name} {kind}: {r['per_second']:.0f}/s p50 {r['p50_ms']:.1f} ms"
                      + (f" e.g. {r['bad'][0]}" if r["bad"] else ""), flush=True)
        if {"create", "delete"} & set(args.kinds):
            figures["floor_write"] = load("write", "floor", bare, args, base="/bare", token="", lookup_range=1)
        figures["ceiling_2"] = load("ceiling", "ceiling", ceiling, args, base="", token="", lookup_range=1)
        figures["peak_rss_mb"] = {"service": sorted(round(v) for v in service.peak_rss_mb().values()),
                                  "peer": sorted(round(v) for v in peer.peak_rss_mb().values())}
    figures["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return figures


def report(f: dict[str, Any]) -> str:
    ceiling = (f["ceiling"]["per_second"] + f["ceiling_2"]["per_second"]) / 2
    lines = [f"service vs scim2-server 0.8.3 vs ceiling: PostgreSQL, {f['users']:,} users, group of {f['group']:,}, "
             f"gunicorn 2 gthread workers x 1 thread each, {f['clients']} keep-alive clients, {f['seconds']} s per run",
             f"ceiling (GET / on trivial Flask): {f['ceiling']['per_second']:.0f}/s before, "
             f"{f['ceiling_2']['per_second']:.0f}/s after",
             f"{'request':12} {'service/s':>9} {'p50':>6} {'p99':>6} {'CPU ms':>6} {'peer/s':>7} {'p50':>6} {'p99':>6} "
             f"{'CPU ms':>6} {'vs peer':>7} {'target':>6} {'svc/ceil':>8} {'peer/ceil':>9}"]
    for kind in [k for k in KINDS if f"service_{k}" in f]:
        s, p = f[f"service_{kind}"], f[f"peer_{kind}"]
        ratio = s["per_second"] / p["per_second"] if p["per_second"] else float("inf")
        verdict = "met" if ratio >= TARGETS[kind] else "MISSED"
        lines.append(f"{kind:12} {s['per_second']:9.0f} {s['p50_ms']:6.1f} {s['p99_ms']:6.1f} {s['cpu_ms']:6.2f} "
                     f"{p['per_second']:7.0f} {p['p50_ms']:6.1f} {p['p99_ms']:6.1f} {p['cpu_ms']:6.2f} "
                     f"{ratio:6.2f}x {TARGETS[kind]:5.1f}x {s['per_second'] / ceiling:8.1%} "
                     f"{p['per_second'] / ceiling:9.1%}  {verdict}"
                     + ("  (ids ran out)" if s["ran_out"] or p["ran_out"] else "")
                     + (f"  errors: {s['bad'] + p['bad']}" if s["bad"] or p["bad"] else ""))
    lines.append("the floor (benchmarks/bare_app.py: the same database work as hand-written SQL in a plain Flask app):")
    for kind in [k for k in FLOOR_KINDS if f"floor_{k}" in f]:
        r, p = f[f"floor_{kind}"], f[f"peer_{kind}"]
        ratio = r["per_second"] / p["per_second"] if p["per_second"] else float("inf")
        lines.append(f"  {kind:10} {r['per_second']:7.0f}/s  p50 {r['p50_ms']:.1f} ms  CPU {r['cpu_ms']:.2f} ms  "
                     f"{ratio:.2f}x scim2-server, {r['per_second'] / ceiling:.1%} of the ceiling"
                     + (f"  errors: {r['bad']}" if r["bad"] else ""))
    if "floor_write" in f:
        r = f["floor_write"]
        versus = ", ".join(f"{r['per_second'] / f[f'peer_{kind}']['per_second']:.2f}x scim2-server's {kind}"
                           for kind in ("create", "delete") if f.get(f"peer_{kind}", {}).get("per_second"))
        lines.append(f"the least durable write (bare_app POST /bare/write: one INSERT and COMMIT, nothing else): "
                     f"{r['per_second']:.0f}/s, {versus}, {r['per_second'] / ceiling:.1%} of the ceiling")
    lines.append(f"peak RSS per worker, MB: {f['peak_rss_mb']}")
    lines.append(f"CPU busy with other processes before the runs: {f['busy_before']:.0%}; uptime: {f['uptime']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40_000,
                        help="seeded users; the deletes use all but the group's and the PATCHes' (the peer deletes"
                             " up to 2,400/s: fewer would run out)")
    parser.add_argument("--group", type=int, default=1_000, help="members of the group the PATCHes change")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--peer-venv", default=str(ROOT / ".venv-peer"), help="scim2-server's own virtualenv")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    from tests.pgcluster import PostgresCluster

    folder, cluster = Path(tempfile.mkdtemp(prefix="bench-peer-")), PostgresCluster()
    try:
        cluster.start()
        figures = bench(args, folder, cluster.create_database("bench"))
        print()
        print(report(figures))
        if args.json_file:
            Path(args.json_file).write_text(json.dumps(figures, indent=2, default=str))
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
