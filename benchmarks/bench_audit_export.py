"""Benchmark: `identity audit export` of N events, its throughput and its peak memory.

For each size, a fresh database is migrated and filled with one org's chain of N realistic,
correctly chained events (bulk-inserted: filling is not what is measured). Then a separate
process runs the real CLI command (`identity.web.audit_cli.audit export ...`, the code `identity audit export`
runs) and reports wall time, events per second and its own peak RSS (ru_maxrss), so that the
sizes can be compared side by side: memory must stay flat as N grows. Targets: >= 50,000
events/s as JSON Lines, peak RSS < 150 MB.

    .venv/bin/python benchmarks/bench_audit_export.py                      # 100k and 1M, SQLite
    .venv/bin/python benchmarks/bench_audit_export.py --events 100000 --formats jsonl csv ocsf
    .venv/bin/python benchmarks/bench_audit_export.py --backend postgresql  # a throwaway cluster
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTIONS = [("user.created", "user"), ("seat.assigned", "user"), ("member.role_changed", "user"),
           ("team.member_added", "user"), ("api_key.created", "api_key"), ("user.deactivated", "user"),
           ("seat.released", "user"), ("sso.login_succeeded", "user")]


def fill(url: str, count: int) -> str:
    """Migrate the database at `url`, make one org and append `count` chained events; return its slug."""
    from sqlalchemy import insert, update

    from audit.actor import system_actor
    from audit.log import event_hash
    from audit.models import AuditEvent, AuditHead
    from identity import orgs
    from identity.db import Database
    from identity.migrate import upgrade

    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        org = orgs.create_org(session, system_actor("bench"), "Bench", owner_email="owner@bench.test").org
    with db.reading() as session:
        head = session.get_one(AuditHead, org.id)
        seq, prev = head.seq, head.hash
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    batch: list[dict[str, object]] = []
    with db.begin() as conn:
        for n in range(count):
            action, target_type = ACTIONS[n % len(ACTIONS)]
            seq += 1
            fields: dict[str, object] = {
                "id": str(uuid.uuid4()), "org_id": org.id, "occurred_at": start + dt.timedelta(microseconds=1000 * n),
                "actor_type": "scim_token", "actor_id": "c0ffee00-0000-4000-8000-000000000001",
                "actor_display": "SCIM token Okta (scim_ab12cd)", "action": action, "target_type": target_type,
                "target_id": str(uuid.uuid4()), "target_display": f"user{n}@bench.test",
                "changes": {"role": {"before": "member", "after": "admin"}, "source": "scim",
                            "team_id": "eng-1a2b3c4d"},
                "outcome": "success", "request_id": uuid.uuid4().hex, "ip": "203.0.113.7",
                "user_agent": "Okta SCIM Client 1.0.0", "seq": seq, "prev_hash": prev,
            }
            fields["hash"] = prev = event_hash({**fields, "occurred_at": fields["occurred_at"]})
            batch.append(fields)
            if len(batch) == 10_000:
                conn.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            conn.execute(insert(AuditEvent), batch)
        conn.execute(update(AuditHead).where(AuditHead.org_id == org.id).values(seq=seq, hash=prev))
    db.dispose()
    return org.slug


def peak_rss_mb() -> float:
    """Return this process's peak resident memory (VmHWM), in MB.

    Not ru_maxrss: on Linux that survives exec, so a child would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(url: str, slug: str, fmt: str, out: str, data_dir: str) -> None:
    """Run the real export command in this process; print one JSON line of figures."""
    os.environ.update(DATABASE_URL=url, IDENTITY_DATA_DIR=data_dir)
    from identity.web.audit_cli import audit

    baseline = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    audit.main(["export", "--org", slug, "--format", fmt, "-o", out], standalone_mode=False)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    lines = sum(1 for _ in open(out, encoding="utf-8")) - (1 if fmt == "csv" else 0)
    peak = peak_rss_mb()
    print(json.dumps({"events": lines, "seconds": round(elapsed, 2), "per_second": int(lines / elapsed),
                      "cpu_seconds": round(cpu, 2), "per_cpu_second": int(lines / cpu), "load": os.getloadavg()[0],
                      "peak_rss_mb": peak, "rss_after_imports_mb": baseline,
                      "bytes": os.path.getsize(out)}))


def measure(url: str, slug: str, fmt: str, folder: Path) -> dict[str, object]:
    out = folder / f"export.{fmt}"
    result = subprocess.run([sys.executable, __file__, "--child", url, slug, fmt, str(out), str(folder / "var")],
                            capture_output=True, text=True, check=True)
    out.unlink()
    figures: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["jsonl"], choices=["jsonl", "csv", "ocsf"])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--child", nargs=5, metavar=("URL", "SLUG", "FORMAT", "OUT", "DATA_DIR"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    cluster = None
    if args.backend == "postgresql":
        from tests.pgcluster import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
    rows = []
    try:
        for count in args.events:
            folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
            url = (cluster.create_database(f"bench_{count}") if cluster else f"sqlite:///{folder / 'identity.db'}")
            started = time.perf_counter()
            slug = fill(url, count)
            print(f"filled {count:,} events in {time.perf_counter() - started:.1f}s ({args.backend})", file=sys.stderr)
            for fmt in args.formats:
                figures = measure(url, slug, fmt, folder)
                rows.append((count, fmt, figures))
                print(f"  {fmt}: {figures}", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if cluster:
            cluster.stop()
    print(f"\naudit export benchmark ({args.backend}, Python {sys.version.split()[0]})")
    print("(events/s is wall time, which other work on the machine slows; events/CPU-s is this process's own CPU;"
          " load is the 1-minute load average when the export ended)")
    print(f"{'events in db':>12} {'format':>6} {'exported':>9} {'seconds':>8} {'events/s':>9} {'events/CPU-s':>12} "
          f"{'peak RSS MB':>11} {'load':>5}")
    for count, fmt, f in rows:
        print(f"{count:>12,} {fmt:>6} {f['events']:>9,} {f['seconds']:>8} {f['per_second']:>9,} "
              f"{f['per_cpu_second']:>12,} {f['peak_rss_mb']:>11} {f['load']:>5.1f}")


if __name__ == "__main__":
    main()
