"""Bounding what an anonymous poster to the ACS can write (issue 14).

Anybody can post to `/saml/<org>/acs`. Each refusal the service writes to the org's audit log is a
row in a hash chain that is never rewritten, so what an anonymous post can make it write must be
bounded:

- a post that is not even a SAML Response (not base64, not XML, another element) writes nothing:
  it is counted here and logged, at most one log line per org and minute carrying how many came
  since the last one;
- a refusal of a response whose signature verified is audited each time: the IdP signed it, and
  it is refused only once (the replay cache keeps its assertion id), so their number is bounded
  by what the IdP issues;
- any other refusal (a forged or stale signature, a wrong destination, a replay...) is audited at
  most once per org, reason and WINDOW per process, the event carrying how many refusals of that
  reason were left out since the previous one; the rest are counted here and logged.

The counts live in this process's memory; with N worker processes the bound is N times as large.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("identity.saml")

WINDOW = dt.timedelta(minutes=1)
UNPARSEABLE = frozenset({"malformed", "not_a_response"})


@dataclass
class _Window:
    started: dt.datetime
    left_out: int = 0


@dataclass
class RefusalCounter:
    """Counts refused ACS posts per (kind, org, reason); decides which reach the audit log."""

    totals: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def unparseable(self, org_slug: str, reason: str, now: dt.datetime) -> None:
        """Count a post that is no SAML Response; log once per window, with how many came since."""
        key = ("unparseable", org_slug, "")
        left_out = self._count(key, now)
        if left_out is not None:
            log.warning("unparseable post to the SAML ACS, not audited", extra={
                "org": org_slug, "reason": reason, "since_last_line": left_out + 1, "total": self.totals[key]})

    def admit(self, org_id: str, reason: str, now: dt.datetime) -> int | None:
        """Return how many refusals of `reason` were left out since the last audited one, when this
        one is to be audited; None when it is left out (counted, and logged at debug level)."""
        left_out = self._count(("refused", org_id, reason), now)
        if left_out is None:
            log.debug("refused SAML response left out of the audit log", extra={"org_id": org_id, "reason": reason})
        return left_out

    def _count(self, key: tuple[str, str, str], now: dt.datetime) -> int | None:
        with self._lock:
            self.totals[key] += 1
            window = self._windows.get(key)
            if window is not None and now - window.started < WINDOW:
                window.left_out += 1
                return None
            self._windows[key] = _Window(now)
            return 0 if window is None else window.left_out
