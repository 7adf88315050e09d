"""The operators' counters (issue 19): Prometheus families, correct under gunicorn's several workers.

What is counted, and from where:
- `identity_http_requests_total` and `identity_http_request_duration_seconds`: every answer, by
  method, route (the URL rule, never the path: a path can carry a secret) and status, when the
  server closes the answer, its last byte sent (identity.web.front.finished: for the app's answers,
  registered by its request hook in identity.web.app; for those answered in front of Flask, the key
  check and the SCIM lookup);
- `identity_scim_operations_total`: SCIM requests by resource (the rule's first segment under
  `/scim/v2/`), method and outcome (`success`, `refused` for 4xx, `error` for 5xx);
- `identity_key_checks_total`: the gateway key check's answers by code (`valid`, a refusal reason,
  `unauthenticated` for a wrong gateway credential);
- `identity_audit_events_total`, `identity_saml_sign_ins_total`, `identity_seat_purchases_total`,
  `identity_seat_refusals_total`: from the audit events each transaction committed
  (audit.observers), so the domain knows nothing of Prometheus and the counts are what the log holds
  of this service's processes. Only those: the `identity` commands (cron's `billing renew` among
  them) never create the families, so their events are in the audit log alone. Multiprocess mode
  sums one run of workers in a directory emptied at its start; each command run would leave files
  of its own there for every scrape to read until the next restart (README, "Metrics for operators").

Multiprocess mode (prometheus_client's) is on when `PROMETHEUS_MULTIPROC_DIR` is set before the
workers start: each worker writes its own files there and `/metrics` adds them up. `identity
serve` sets it up (identity.web.metrics_serve). prometheus_client is imported on first use, not at
import time, because it picks its mode when it is first imported: an import in the CLI process,
before `identity serve` has set the directory, would fix every worker in single-process mode.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import observers

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: the key check answers in a few ms, a group PATCH into 100,000 members in about a second.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SAML_FLOWS = frozenset({"sp_initiated", "idp_initiated"})  # a login link's sign-in is not SAML's
# prometheus_client's own files in the directory: `<type>_<pid>.db`, a gauge's type with its mode
# (`gauge_livesum_<pid>.db`). Only these are read and emptied: the folder may hold the operator's
# other files, the embedded database (`identity.db`) among them.
_WORKER_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


@dataclass(frozen=True)
class Families:
    requests: Any
    latency: Any
    scim: Any
    key_checks: Any
    audit_events: Any
    saml_sign_ins: Any
    seat_purchases: Any
    seat_refusals: Any
    registry: Any


@functools.cache
def families() -> Families:
    """Create the metric families once per process (and subscribe to committed audit events)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry(auto_describe=True)

    def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Any:
        return Counter(name, doc, list(labels), registry=registry)

    made = Families(
        requests=counter("identity_http_requests", "HTTP answers by method, route (URL rule) and status",
                         ("method", "route", "status")),
        latency=Histogram("identity_http_request_duration_seconds", "Time to answer, by method and route",
                          ["method", "route"], buckets=BUCKETS, registry=registry),
        scim=counter("identity_scim_operations", "SCIM requests by resource, method and outcome",
                     ("resource", "method", "outcome")),
        key_checks=counter("identity_key_checks", "The gateway key check's answers by code", ("answer",)),
        audit_events=counter("identity_audit_events", "Audit events committed, by action and outcome",
                             ("action", "outcome")),
        saml_sign_ins=counter("identity_saml_sign_ins", "SAML sign-ins by outcome and refusal reason",
                              ("outcome", "reason")),
        seat_purchases=counter("identity_seat_purchases", "Seats bought (prorated purchases and renewals)", ("kind",)),
        seat_refusals=counter("identity_seat_refusals", "New members refused at the org's seat cap"),
        registry=registry,
    )
    observers.subscribe(count_audit_events)
    return made


def method_label(method: str) -> str:
    """Return the method as a label: any method outside HTTP's usual set is `other` (bounded labels)."""
    return method if method in METHODS else "other"


def outcome(status: int) -> str:
    """Return `success` below 400, `refused` for a 4xx and `error` for a 5xx."""
    return "success" if status < 400 else "refused" if status < 500 else "error"


@functools.lru_cache(maxsize=4096)
def _child(family: Any, *values: str) -> Any:
    """The family's counter or histogram for these label values, looked up once: prometheus_client's
    `labels` checks and locks on every call, a fifth of a key check's counting (the labels here are
    bounded: methods, URL rules, statuses, answer codes)."""
    return family.labels(*values)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answer of `route` (a URL rule or `-`, never a raw path) and its duration."""
    found = families()
    method = method_label(method)
    _child(found.requests, method, route, str(status)).inc()
    _child(found.latency, method, route).observe(seconds)
    if route.startswith("/scim/v2/"):
        resource = route[len("/scim/v2/"):].split("/", 1)[0] or "-"
        _child(found.scim, resource, method, outcome(status)).inc()


def observe_key_check(answer: str) -> None:
    """Count one answer of the gateway key check (`valid`, a refusal reason, `unauthenticated`)."""
    _child(families().key_checks, answer).inc()


def count_audit_events(events: Sequence[Mapping[str, Any]]) -> None:
    """Count a committed transaction's audit events, and the sign-ins and seats among them."""
    found = families()
    for item in events:
        action, changes = str(item.get("action")), item.get("changes") or {}
        found.audit_events.labels(action, str(item.get("outcome", "success"))).inc()
        if action == "sso.login_succeeded" and changes.get("flow") in SAML_FLOWS:
            found.saml_sign_ins.labels("success", "").inc()
        elif action == "sso.login_failed":
            # Repeats of one refusal are folded into the next audited one (saml.refusals).
            left_out = changes.get("left_out_since_last")
            times = 1 + (left_out if isinstance(left_out, int) and left_out > 0 else 0)
            found.saml_sign_ins.labels("refused", str(changes.get("reason", "unknown"))[:64]).inc(times)
        elif action in ("seat.purchased", "seat.renewed"):
            seats = changes.get("seats", 1)
            found.seat_purchases.labels(action.split(".")[1]).inc(seats if isinstance(seats, int) else 1)
        elif action == "seat.refused":
            found.seat_refusals.inc()


def worker_files(folder: Path) -> list[Path]:
    """Return prometheus_client's own files in `folder` (the workers' counters), nothing else it holds."""
    return sorted(path for path in folder.glob("*.db") if _WORKER_FILE.fullmatch(path.name))


class WorkerFiles:
    """A collector of every worker's counters in `folder`: prometheus_client's MultiProcessCollector
    reads every `*.db` of the folder, and fails on any that is not its own (an SQLite database)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Any:
        from prometheus_client import multiprocess

        files = [str(path) for path in worker_files(self.folder)]
        return multiprocess.MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]


def summed_registry(folder: Path) -> Any:
    """Return a registry that adds up the counters every worker wrote in `folder`."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(WorkerFiles(folder))
    return registry


def exposition() -> tuple[bytes, str]:
    """Return the text exposition of every family (all workers' in multiprocess mode) and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    folder = os.environ.get(MULTIPROC_ENV)
    registry = summed_registry(Path(folder)) if folder else families().registry
    return generate_latest(registry), CONTENT_TYPE_LATEST
