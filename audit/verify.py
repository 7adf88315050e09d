"""Proving an org's chain intact, in the database or in an exported JSON Lines file.

The walk is streaming (one event and one look-ahead in memory) and stops at the first break:
an event whose content no longer matches its hash (edited), a missing sequence number
(deleted), an event chained to a hash other than its predecessor's (edited and re-hashed, or
inserted), events out of order (reordered), a chain that no longer reaches a signed checkpoint
(rewritten) or its recorded head (truncated). Which kind it reports is the likeliest reading of
the evidence; that there is a break, and where the chain first stops holding, is certain.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from audit import checkpoint_docs as cps
from audit.actions import AuditAction
from audit.events import Selection, hashed_fields, iter_rows, row_fields
from audit.log import GENESIS_HASH, OPERATOR_STREAM, event_hash
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
    base_seq: int = 0  # the chain starts after this event: 0, or where the last purge moved it
    purged_checkpoints: list[int] = field(default_factory=list)  # signed, inside the purged events
    purge_event: int | None = None  # the retained audit.purged event that vouches for base_seq

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
        purged = ""
        if self.purge_event is not None:
            purged = (f"; events up to #{self.base_seq} were purged, vouched for by a signed purge checkpoint "
                      f"and event #{self.purge_event}")
            if self.purged_checkpoints:
                purged += f" ({len(self.purged_checkpoints)} signed checkpoint(s) fall inside the purged events)"
        return (f"intact: {self.checked} events #{self.first_seq}..#{self.last_seq}, "
                f"head hash {self.head_hash}{matched}{purged}")


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

    Every stored checkpoint, and any `kept` by an auditor, must be authentic and must match; a
    moved base must be vouched for (`_check_base`).
    """
    head, kept = session.get(AuditHead, org_id), list(kept)
    if head is None and org_id == OPERATOR_STREAM and not kept:
        return Report(org_id)  # the operators' chain begins with their first act: none yet is no tampering
    if head is None:
        return Report(org_id, broken=Break(0, None, "truncated", "the org has no audit chain"))
    return _verify_stored(session, head, public, kept, upto=None)


def verify_head(session: Session, org_id: str, public: Ed25519PublicKey) -> Report:
    """Check the org's chain up to the head as it stands now, before the service signs that head.

    Events that other transactions commit meanwhile get higher numbers; they are not read, so
    writers need not wait for the check.
    """
    head = session.get(AuditHead, org_id)
    if head is None:
        return Report(org_id, broken=Break(0, None, "truncated", "the org has no audit chain"))
    return _verify_stored(session, head, public, [], upto=head.seq)


def _verify_stored(session: Session, head: AuditHead, public: Ed25519PublicKey, kept: list[dict[str, Any]],
                   upto: int | None) -> Report:
    report = Report(head.org_id, base_seq=head.base_seq)
    everything = [*cps.all_of(session, head.org_id), *kept]
    if upto is not None:  # checkpoints signed past the head read (committed since) vouch for events not read
        everything = [c for c in everything if not isinstance(c.get("seq"), int) or c["seq"] <= upto]
    signed, forged = trusted_checkpoints(everything, head.org_id, public)
    if forged is not None:
        report.broken = forged
        return report
    base = Anchor(head.base_seq, head.base_hash)
    unvouched = _check_base(base, everything, signed, kept, public)
    if unvouched is not None:
        report.broken = unvouched
        return report
    report.purged_checkpoints = sorted(seq for seq in signed if seq < base.seq)
    witness = _PurgeWitness(base)
    rows: Iterable[dict[str, Any]] = (row_fields(row) for row in
                                      iter_rows(session, Selection(head.org_id, after_seq=base.seq)))
    if upto is not None:
        rows = itertools.takewhile(lambda event: int(event["seq"]) <= upto, rows)
    report.head_hash = base.hash
    walk(witness.watch(rows), report, anchor=base, signed={seq: c for seq, c in signed.items() if seq > base.seq})
    if report.broken is None:
        _check_end(report, head, signed)
    if report.broken is None and base.seq and witness.found is None:
        report.broken = _unvouched(base, signed, kept, "no retained audit.purged event records moving it there")
    report.purge_event = witness.found
    return report


def _check_base(base: Anchor, checkpoints: list[dict[str, Any]], signed: dict[int, dict[str, Any]],
                kept: list[dict[str, Any]], public: Ed25519PublicKey) -> Break | None:
    """Return why a chain that starts after genesis is not vouched for, or None.

    Only a purge moves the start, and a purge signs a checkpoint of reason `purge` at the new
    base, its reason covered by the signature: a copy of an hourly checkpoint relabelled `purge`
    does not verify. (The retained `audit.purged` event, the other half, is found by the walk.)
    """
    if not base.seq:
        return None
    for checkpoint in checkpoints:
        if (int(checkpoint.get("seq", -1)) == base.seq and checkpoint.get("hash") == base.hash
                and cps.signed_reason(checkpoint, public) == "purge"):
            return None
    return _unvouched(base, signed, kept, "no checkpoint signed for a purge vouches for that start")


def _unvouched(base: Anchor, signed: dict[int, dict[str, Any]], kept: list[dict[str, Any]], why: str) -> Break:
    detail = f"the chain starts after #{base.seq}, but {why}: events were removed outside a retention purge"
    inside = sorted(seq for seq in signed if seq <= base.seq)
    yours = [seq for seq in inside if seq in {int(c.get("seq", -1)) for c in kept}]
    if inside:  # an auditor's checkpoint is never dropped in silence: the first one kept is named
        seq, whose = (yours[0], "you kept") if yours else (inside[0], "stored")
        detail += (f"; the signed checkpoint {whose} for #{seq} (signed {signed[seq]['time']}) "
                   "falls inside the removed events and can no longer be checked")
    return Break(base.seq + 1, None, "unanchored", detail)


class _PurgeWitness:
    """Watches the retained events go by for the `audit.purged` event that moved the start to `base`."""

    def __init__(self, base: Anchor) -> None:
        self.base = base
        self.found: int | None = None

    def watch(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for event in events:
            if (self.found is None and event["action"] == AuditAction.AUDIT_PURGED
                    and self._moved_to_base(event["changes"])):
                self.found = int(event["seq"])
            yield event

    def _moved_to_base(self, changes: Any) -> bool:
        if not isinstance(changes, dict) or not isinstance(changes.get("base_seq"), dict):
            return False
        return bool(changes["base_seq"].get("after") == self.base.seq and changes.get("base_hash") == self.base.hash)


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
