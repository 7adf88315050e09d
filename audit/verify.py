"""Proving an org's chain intact, in the database or in an exported JSON Lines file.

The walk is streaming (one event and one look-ahead in memory) and stops at the first break:
an event whose content no longer matches its hash (edited), a missing sequence number
(deleted), an event chained to a hash other than its predecessor's (edited and re-hashed, or
inserted), events out of order (reordered), a chain that no longer reaches a signed checkpoint
(rewritten) or its recorded head (truncated). Which kind it reports is the likeliest reading of
the evidence; that there is a break, and where the chain first stops holding, is certain.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from audit import checkpoints as cps
from audit.events import Selection, hashed_fields, iter_rows, row_fields
from audit.log import GENESIS_HASH, event_hash
from audit.models import AuditHead


@dataclass(frozen=True)
class Break:
    """The first place the chain stops holding: the event (by seq, and id when it exists) and why."""

    seq: int
    event_id: str | None
    kind: str  # edited | deleted | inserted | reordered | rewritten | truncated | unanchored | forged | malformed
    detail: str

    def __str__(self) -> str:
        named = f"event #{self.seq}" + (f" ({self.event_id})" if self.event_id else "")
        return f"{named}: {self.kind}: {self.detail}"


@dataclass
class Report:
    """What a verification found."""

    org_id: str | None
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    checkpoints_matched: list[int] = field(default_factory=list)
    broken: Break | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def summary(self) -> str:
        """Return one line for a person: intact over which range, or the first break."""
        if self.broken is not None:
            return f"BROKEN at {self.broken}"
        if not self.checked:
            return f"intact: no events to check (head hash {self.head_hash})"
        matched = f", {len(self.checkpoints_matched)} signed checkpoint(s) matched" if self.checkpoints_matched else ""
        return (f"intact: {self.checked} events #{self.first_seq}..#{self.last_seq}, "
                f"head hash {self.head_hash}{matched}")


@dataclass(frozen=True)
class Anchor:
    """Where the checked run starts: the seq and hash of the event just before it."""

    seq: int
    hash: str


def _peek(events: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    iterator = iter(events)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following


def _moved(event: dict[str, Any]) -> int | None:
    """Return the seq an event's hash was made for, when it now sits one or two places away."""
    for delta in (-1, 1, -2, 2):
        if event_hash({**event, "seq": event["seq"] + delta}) == event["hash"]:
            return int(event["seq"]) + delta
    return None


def _gap(event: dict[str, Any], expected: int, following: dict[str, Any] | None) -> Break:
    seq = int(event["seq"])
    if seq < expected:
        return Break(seq, event["id"], "reordered", f"#{seq} comes after #{expected - 1}: out of order or repeated")
    if following is not None and following["seq"] == expected:
        return Break(seq, event["id"], "reordered", f"#{seq} comes before #{expected}")
    missing = f"#{expected}" if seq == expected + 1 else f"#{expected} to #{seq - 1}"
    return Break(expected, None, "deleted", f"{missing} missing: the chain jumps from #{expected - 1} to #{seq}")


def _bad_content(event: dict[str, Any], previous: dict[str, Any] | None) -> Break:
    seq = int(event["seq"])
    was = _moved(event)
    if was == seq - 1 and previous is not None and event["prev_hash"] == previous["prev_hash"]:
        return Break(previous["seq"], previous["id"], "inserted",
                     f"#{previous['seq']} was put in before the event that held that number (now renumbered #{seq})")
    if was is not None:
        return Break(seq, event["id"], "reordered", f"this event was #{was} and now sits at #{seq}")
    return Break(seq, event["id"], "edited", "its content no longer matches its hash")


def _bad_link(event: dict[str, Any], previous: dict[str, Any] | None) -> Break:
    seq = int(event["seq"])
    if previous is None:
        return Break(seq, event["id"], "edited", "it does not chain to the hash of the event before it")
    if event["prev_hash"] == previous["prev_hash"]:
        return Break(previous["seq"], previous["id"], "inserted",
                     f"#{seq} chains past #{previous['seq']} to #{previous['seq'] - 1}")
    return Break(previous["seq"], previous["id"], "edited",
                 f"it was changed and re-hashed: #{seq} chained to a different hash")


def walk(events: Iterable[dict[str, Any]], report: Report, *, anchor: Anchor | None = None,
         signed: dict[int, dict[str, Any]] | None = None) -> Report:
    """Check `events` (stored fields, chain order) link by link; stop at the first break.

    Without an anchor the run starts wherever the first event says, which is what lets an export
    of a time range verify on its own. `signed` maps seq to an authentic checkpoint: an event at
    that seq must carry the checkpoint's hash. One loop with its checks in order, hence its length.
    """
    signed = signed or {}
    expected = anchor.seq + 1 if anchor else None
    expected_prev = anchor.hash if anchor else None
    previous: dict[str, Any] | None = None
    for event, following in _peek(events):
        seq = int(event["seq"])
        if expected is None:
            expected, expected_prev = seq, event["prev_hash"]
            if seq == 1:
                expected_prev = GENESIS_HASH
            elif seq - 1 in signed:
                expected_prev = signed[seq - 1]["hash"]
        if seq != expected:
            report.broken = _gap(event, expected, following)
            return report
        if event_hash(event) != event["hash"]:
            report.broken = _bad_content(event, previous)
            return report
        if event["prev_hash"] != expected_prev:
            report.broken = _bad_link(event, previous)
            return report
        checkpoint = signed.get(seq)
        if checkpoint is not None:
            if checkpoint["hash"] != event["hash"]:
                report.broken = Break(seq, event["id"], "rewritten",
                                      f"the checkpoint signed {checkpoint['time']} says #{seq} had hash "
                                      f"{checkpoint['hash']}: history up to #{seq} was rewritten")
                return report
            report.checkpoints_matched.append(seq)
        report.first_seq = seq if report.first_seq is None else report.first_seq
        report.last_seq, report.head_hash, report.checked = seq, event["hash"], report.checked + 1
        previous, expected, expected_prev = event, seq + 1, event["hash"]
    return report


def trusted_checkpoints(checkpoints: Iterable[dict[str, Any]], org_id: str,
                        public: Ed25519PublicKey) -> tuple[dict[int, dict[str, Any]], Break | None]:
    """Return the org's authentic checkpoints by seq, or the first forged or contradictory one."""
    good, bad = cps.authentic(checkpoints, public)
    for checkpoint in bad:
        return {}, Break(int(checkpoint.get("seq", 0)), None, "forged",
                         f"a checkpoint for #{checkpoint.get('seq')} does not carry the service's signature")
    trusted: dict[int, dict[str, Any]] = {}
    for checkpoint in good:
        if checkpoint["org_id"] != org_id:
            return {}, Break(int(checkpoint["seq"]), None, "forged", "a checkpoint of another org was given")
        if checkpoint["seq"] in trusted and trusted[checkpoint["seq"]]["hash"] != checkpoint["hash"]:
            return {}, Break(int(checkpoint["seq"]), None, "rewritten", "two signed checkpoints disagree")
        trusted[int(checkpoint["seq"])] = checkpoint
    return trusted, None


def verify_database(session: Session, org_id: str, public: Ed25519PublicKey,
                    kept: Iterable[dict[str, Any]] = ()) -> Report:
    """Check the org's stored chain from its base (genesis, or the last purge) to its head.

    Every stored checkpoint, and any `kept` by an auditor, must be authentic and must match.
    """
    report = Report(org_id)
    head = session.get(AuditHead, org_id)
    if head is None:
        report.broken = Break(0, None, "truncated", "the org has no audit chain")
        return report
    signed, forged = trusted_checkpoints([*cps.all_of(session, org_id), *kept], org_id, public)
    if forged is not None:
        report.broken = forged
        return report
    if head.base_seq and signed.get(head.base_seq, {}).get("hash") != head.base_hash:
        report.broken = Break(head.base_seq + 1, None, "unanchored",
                              f"the chain starts after #{head.base_seq}, but no signed purge checkpoint "
                              "vouches for that start: events were removed outside a retention purge")
        return report
    signed = {seq: c for seq, c in signed.items() if seq > head.base_seq}  # purged history: nothing to compare
    report.head_hash = head.base_hash
    rows = (row_fields(row) for row in iter_rows(session, Selection(org_id, after_seq=head.base_seq)))
    walk(rows, report, anchor=Anchor(head.base_seq, head.base_hash), signed=signed)
    if report.broken is None:
        _check_end(report, head, signed)
    return report


def _check_end(report: Report, head: AuditHead, signed: dict[int, dict[str, Any]]) -> None:
    last = report.last_seq if report.last_seq is not None else head.base_seq
    newest = max(signed, default=0)
    if newest > last:
        report.broken = Break(last + 1, None, "truncated",
                              f"a signed checkpoint covers #{newest}, but the chain ends at #{last}")
    elif (last, report.head_hash) != (head.seq, head.hash):
        report.broken = Break(last + 1 if head.seq > last else last, None, "truncated",
                              f"the chain ends at #{last} but its recorded head is #{head.seq}")


def file_events(lines: IO[str]) -> Iterator[dict[str, Any]]:
    """Yield the stored fields of each event of a JSON Lines export; raise ValueError on a bad line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield hashed_fields(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"line {number} is not an exported audit event: {error}") from error


def verify_file(lines: IO[str], org_id: str | None = None,
                signed: Iterable[dict[str, Any]] = ()) -> Report:
    """Check an exported JSON Lines file as a contiguous piece of the org's chain.

    `signed` are authentic checkpoints (the caller checked their signatures); one that falls
    inside the file's range, or just before its first event, must match it.
    """
    by_seq = {int(c["seq"]): c for c in signed if org_id is None or c["org_id"] == org_id}
    report = Report(org_id)

    def same_org(found: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in found:
            if report.org_id is None:
                report.org_id = event["org_id"]
            if event["org_id"] != report.org_id:
                raise _Foreign(event, report.org_id)
            yield event

    try:
        walk(same_org(file_events(lines)), report, signed=by_seq)
    except _Foreign as foreign:
        report.broken = Break(int(foreign.event["seq"]), foreign.event["id"], "malformed", str(foreign))
    except ValueError as error:
        report.broken = Break(report.last_seq + 1 if report.last_seq else 0, None, "malformed", str(error))
    return report


class _Foreign(ValueError):
    """An event of another org in a file that is one org's export."""

    def __init__(self, event: dict[str, Any], org_id: str) -> None:
        super().__init__(f"it belongs to org {event['org_id']}, not to org {org_id}")
        self.event = event
