"""Exporting a selection of events as JSON Lines, CSV or OCSF JSON Lines, streamed in chunks.

Each writer turns an iterator of export rows (audit.events.iter_export_rows) into an iterator of
text chunks, so that the API's response and the CLI's file both stream with constant memory.
Only JSON Lines keeps everything `identity audit verify` needs; CSV is for people and
spreadsheets, OCSF for SIEMs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from audit.events import parse_time

ExportRow = Sequence[Any]  # a row of audit.events.iter_export_rows, in audit.events.COLUMNS order

FORMATS = ("jsonl", "csv", "ocsf")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv", "ocsf": "application/x-ndjson"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "ocsf": "ocsf.jsonl"}
CHUNK_ROWS = 500

CSV_COLUMNS = ("id", "seq", "time", "org_id", "actor_type", "actor_id", "actor_display", "action", "target_type",
               "target_id", "target_display", "changes", "outcome", "request_id", "source_ip", "user_agent",
               "prev_hash", "hash", "client_request_id")
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")

_quote = json.encoder.encode_basestring  # the C encoder; non-ASCII kept
# One exported event per line, in its public shape (audit.events.document), written by template:
# `changes` is the JSON text the database keeps and every other string is quoted by the C encoder.
LINE = ('{"id":%s,"seq":%d,"time":%s,"org_id":%s,"actor":{"type":%s,"id":%s,"display":%s},"action":%s,'
        '"target":{"type":%s,"id":%s,"display":%s},"changes":%s,"outcome":%s,"request_id":%s,'
        '"client_request_id":%s,"source_ip":%s,"user_agent":%s,"prev_hash":%s,"hash":%s}')


def _nullable(value: str | None) -> str:
    return "null" if value is None else str(_quote(value))


def jsonl_line(r: ExportRow) -> str:
    """Return one export row as its JSON line, without the newline."""
    q = _quote
    return LINE % (q(r[0]), r[1], q(r[2]), q(r[3]), q(r[4]), q(r[5]), q(r[6]), q(r[7]), q(r[8]), q(r[9]), q(r[10]),
                   r[11], q(r[12]), _nullable(r[13]), _nullable(r[18]), _nullable(r[14]), _nullable(r[15]), q(r[16]),
                   q(r[17]))


def _lines(rows: Iterable[Any], line: Callable[[Any], str]) -> Iterator[str]:
    chunk: list[str] = []
    for row in rows:
        chunk.append(line(row))
        if len(chunk) == CHUNK_ROWS:
            chunk.append("")
            yield "\n".join(chunk)
            chunk = []
    if chunk:
        chunk.append("")
        yield "\n".join(chunk)


def jsonl(rows: Iterable[ExportRow]) -> Iterator[str]:
    """Yield JSON Lines of events in their public shape: the format that verifies."""
    return _lines(rows, jsonl_line)


def neutralize(cell: Any) -> Any:
    """Return a CSV cell that no spreadsheet runs as a formula: a leading `'` where it could."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_chunks(rows: Iterable[ExportRow]) -> Iterator[str]:
    """Yield CSV (RFC 4180, a header first) of events, formula-like cells neutralized."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for number, row in enumerate(rows, start=1):
        writer.writerow([neutralize(cell) for cell in row])
        if number % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# OCSF 1.3.0, category 3 (Identity & Access Management). action -> (class_uid, activity_id).
OCSF_VERSION = "1.3.0"
CLASSES = {3001: "Account Change", 3002: "Authentication", 3004: "Entity Management", 3006: "Group Management"}
ACTIVITY_NAMES = {
    3001: {1: "Create", 2: "Enable", 5: "Disable", 6: "Delete", 7: "Attach Policy", 8: "Detach Policy", 99: "Other"},
    3002: {1: "Logon", 2: "Logoff", 99: "Other"},
    3004: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    3006: {1: "Assign Privileges", 2: "Revoke Privileges", 3: "Add User", 4: "Remove User", 5: "Delete",
           6: "Create", 99: "Other"},
}
OCSF_ACTIONS = {
    "user.created": (3001, 1), "user.reactivated": (3001, 2), "user.deactivated": (3001, 5),
    "user.deleted": (3001, 6), "member.role_changed": (3001, 7), "sso.login_succeeded": (3002, 1),
    "sso.login_failed": (3002, 1), "sso.logged_out": (3002, 2), "team.created": (3006, 6), "team.deleted": (3006, 5),
    "team.member_added": (3006, 3), "team.member_removed": (3006, 4), "team.member_role_changed": (3006, 1),
    "group.created": (3006, 6), "group.deleted": (3006, 5), "group.members_added": (3006, 3),
    "group.members_removed": (3006, 4),
}
PREFIX_CLASSES = {"user": 3001, "member": 3001, "api_key": 3001, "sso": 3002, "team": 3006, "group": 3006}
VERB_ACTIVITIES = {"created": 1, "read": 2, "exported": 2, "verified": 2, "deleted": 4, "revoked": 4, "purged": 4}


def ocsf_class(action: str) -> tuple[int, int]:
    """Return (class_uid, activity_id) for an action: a mapped one, or by its noun and verb."""
    if action in OCSF_ACTIONS:
        return OCSF_ACTIONS[action]
    noun, _, verb = action.partition(".")
    if noun in PREFIX_CLASSES:
        return PREFIX_CLASSES[noun], 99
    return 3004, VERB_ACTIVITIES.get(verb, 3)


def ocsf_event(row: ExportRow) -> dict[str, Any]:
    """Return one export row as an OCSF 1.3 event of its class; what OCSF has no field for is `unmapped`."""
    (event_id, seq, time, org_id, actor_type, actor_id, actor_display, action, target_type, target_id,
     target_display, changes_text, outcome, request_id, ip, user_agent, prev_hash, event_hash, client_request_id) = row
    class_uid, activity_id = ocsf_class(action)
    activity = ACTIVITY_NAMES[class_uid].get(activity_id, "Other")
    changes = json.loads(changes_text)
    subject = {"uid": target_id, "name": target_display, "type": target_type}
    found: dict[str, Any] = {
        "class_uid": class_uid, "class_name": CLASSES[class_uid], "category_uid": 3,
        "category_name": "Identity & Access Management", "activity_id": activity_id, "activity_name": activity,
        "type_uid": class_uid * 100 + activity_id, "type_name": f"{CLASSES[class_uid]}: {activity}",
        "time": int(parse_time(time).timestamp() * 1000), "severity_id": 1, "severity": "Informational",
        "status_id": 1 if outcome == "success" else 2, "status": "Success" if outcome == "success" else "Failure",
        "status_detail": outcome, "message": action,
        "metadata": {"version": OCSF_VERSION, "uid": event_id, "correlation_uid": request_id, "sequence": seq,
                     "event_code": action, "log_name": "audit", "original_time": time, "tenant_uid": org_id,
                     "product": {"name": "identity-provisioning", "vendor_name": "identity-provisioning"}},
        "actor": {"user": {"uid": actor_id, "name": actor_display, "type": actor_type}},
        "unmapped": {"target": subject, "changes": changes, "client_request_id": client_request_id,
                     "prev_hash": prev_hash, "hash": event_hash},
    }
    if ip:
        found["src_endpoint"] = {"ip": ip}
    if user_agent:
        found["http_request"] = {"user_agent": user_agent}
    if class_uid in (3001, 3002):
        found["user"] = subject
    elif class_uid == 3006 and target_type in ("team", "group"):
        found["group"] = {"uid": target_id, "name": target_display}
    elif class_uid == 3006:
        team = str(changes.get("team_id") or "") if isinstance(changes, dict) else ""
        found["user"], found["group"] = subject, {"uid": team, "name": team}
    else:
        found["entity"] = subject
    return found


def ocsf(rows: Iterable[ExportRow]) -> Iterator[str]:
    """Yield OCSF events as JSON Lines."""
    return _lines(rows, lambda row: json.dumps(ocsf_event(row), ensure_ascii=False, separators=(",", ":")))


WRITERS: dict[str, Callable[[Iterable[ExportRow]], Iterator[str]]] = {"jsonl": jsonl, "csv": csv_chunks, "ocsf": ocsf}


def chunks(rows: Iterable[ExportRow], fmt: str) -> Iterator[str]:
    """Yield the text of `rows` in format `fmt` (jsonl, csv or ocsf), chunk by chunk."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return WRITERS[fmt](rows)
