"""Issue 19's targets at scale, from two `bench_scim.py --json` runs: a small org and a big one.

    .venv/bin/python benchmarks/compare_scale.py SMALL.json BIG.json

Lookups (userName, externalId, work email): p99 at the big size within 1.25x of the small one's,
one at a time (the sequential lookups) and under load (the throughput runs); a deep page, the
PATCH of 1,000 members into the 100,000-member group and the read of that group under 1 s; peak
memory per worker under 200 MB.
"""

from __future__ import annotations

import json
import sys
from typing import Any

LOOKUPS = (("userName", "lookup_username", "filter"), ("externalId", "lookup_external_id", "filter_external_id"),
           ("emails[work].value", "lookup_email", "filter_email"))


def rows(small: dict[str, Any], big: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, measured, wanted, met) for each of issue 19's targets at scale."""
    found = []
    for name, alone, loaded in LOOKUPS:
        for how, key in (("one at a time", alone), ("under load", loaded)):
            a, b = small[key]["p99_ms"], big[key]["p99_ms"]
            found.append((f"{name} p99, {how}", f"{b:.1f} ms vs {a:.1f} ms: {b / a:.2f}x", "<= 1.25x", b <= 1.25 * a))
    for label, key, stat in (("deep page", "page_deep", "max_ms"), ("PATCH +1,000 into 100,000", "patch_big", "max_ms"),
                             ("read the 100,000-member group", "group_read", "max_ms")):
        value = big[key][stat]
        found.append((label, f"max {value:.0f} ms (p50 {big[key]['p50_ms']:.0f})", "< 1000 ms", value < 1000))
    rss = max(big["scim_peak_rss_mb"])
    found.append(("peak RSS per worker", f"{rss:.0f} MB", "< 200 MB", rss < 200))
    return found


def main() -> None:
    small, big = (json.loads(open(path).read()) for path in sys.argv[1:3])
    print(f"{small['users']:,} users vs {big['users']:,} users (seeded in {big['seed_seconds']} s); "
          f"uptime at the end of the big run: {big.get('uptime', '?')}")
    for target, measured, wanted, met in rows(small, big):
        print(f"{target:36} {measured:34} {wanted:10} {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
