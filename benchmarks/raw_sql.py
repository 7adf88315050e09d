"""What benchmarks/floor_app.py and benchmarks/bare_app.py share: the lookup and the create as
hand-written SQL on a DBAPI cursor, with no SQLAlchemy statement, Session or result machinery.

Neither is a way to serve SCIM. They measure how fast the database work the SCIM routes must do
can go at all in this stack, so that bench_scim.py can set the SCIM routes between them and the
ceiling.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from typing import Any

from flask import Response

from audit.log import event_hash
from identity import tokens
from identity.db_sqlite import WriterGate
from identity.names import name_key
from scim import discovery, resources

FILTER = re.compile(r'^\s*userName\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
_TOKEN = "SELECT id, org_id, secret_hash, revoked_at, name, prefix FROM scim_tokens WHERE prefix = ?"
_USERS = ("SELECT id, user_name, email, external_id, display_name, given_name, family_name, active, attributes,"
          " created_at, updated_at, version FROM users"
          " WHERE org_id = ? AND deleted_at IS NULL AND user_name_key = ? LIMIT 100")
_GROUPS = ("SELECT g.id, g.display_name FROM idp_group_members m JOIN idp_groups g ON g.id = m.group_id"
           " WHERE m.user_id = ? ORDER BY g.display_name")
# The create: what `users.provision_user` writes for a new active SCIM user (seen with the engine's
# echo), as the same statements.
_ORG = ("SELECT seats_used, (SELECT id FROM teams WHERE org_id = ? AND is_default = ?) FROM orgs WHERE id = ?")
_SEATS = "UPDATE orgs SET seats_used = ? WHERE id = ?"
_USER = ("INSERT INTO users (id, org_id, user_name, user_name_key, email, external_id, display_name, given_name,"
         " family_name, active, has_seat, source, attributes, created_at, updated_at, deleted_at, version)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 1)")
_EMAIL = 'INSERT INTO user_emails (org_id, user_id, value, type, "primary", display) VALUES (?, ?, ?, ?, ?, NULL)'
_GRANT = ("INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)"
          " VALUES (?, ?, ?, 'member', 'scim', '', ?)")
# On PostgreSQL, the seat, the user, its email and its grants in one statement of data-modifying
# WITHs, as the service sends them since 2026-12-07 (identity.users.INSERT_MEMBER).
_NEW_MEMBER = (f"WITH new_user AS ({_USER}), new_email AS ({_EMAIL}), seat AS ({_SEATS})"
               " INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)"
               " SELECT ?, ?, NULL, 'member', 'scim', '', ? UNION ALL SELECT ?, ?, ?, 'member', 'scim', '', ?")
# The delete: what `users.remove_user` sends since 2026-12-07 (tests/scim/test_delete_statements.py).
_LIVE_USER_ROLE = ("SELECT id, user_name, has_seat, (SELECT max(CASE role WHEN 'viewer' THEN 0 WHEN 'member' THEN 1"
                   " WHEN 'admin' THEN 2 WHEN 'owner' THEN 3 END) FROM role_grants WHERE user_id = users.id"
                   " AND team_id IS NULL) FROM users WHERE id = ? AND org_id = ? AND deleted_at IS NULL")
# On PostgreSQL the same read locks the member's groups in id order, then its row, and answers the
# groups' ids (identity.member_removal.LOCK_MEMBER_WITH_ROLE): the user id first, then as above.
_MEMBER_GROUPS = ("SELECT id FROM idp_groups WHERE id IN (SELECT group_id FROM idp_group_members WHERE user_id = ?)"
                  " ORDER BY id FOR NO KEY UPDATE")
_LOCK_USER_ROLE = (f"WITH member_groups AS ({_MEMBER_GROUPS}) "
                   + _LIVE_USER_ROLE.replace(" FROM users WHERE", ", (SELECT array_agg(id) FROM member_groups)"
                                             " FROM users WHERE")
                   + " AND coalesce(cardinality((SELECT array_agg(id) FROM member_groups)), 0) >= 0"
                   " FOR NO KEY UPDATE OF users")
_SEATS_LOCK = "SELECT seats_used FROM orgs WHERE id = ?"
_REVOKE_KEYS = ("UPDATE api_keys SET status = 'revoked', status_reason = 'member_deleted'"
                " WHERE user_id = ? AND status IN ('active', 'blocked') RETURNING id, prefix")
_END_SESSIONS = "DELETE FROM sso_sessions WHERE user_id = ?"
_DROP_GRANTS = "DELETE FROM role_grants WHERE user_id = ?"
_DROP_MEMBERSHIPS = "DELETE FROM idp_group_members WHERE user_id = ? RETURNING group_id"
_TOMBSTONE = ("UPDATE users SET deleted_at = ?, active = false, has_seat = false, updated_at = ?,"
              " version = version + 1 WHERE id = ?")
# On PostgreSQL, all of them in one statement of data-modifying WITHs, as the service sends them:
# each guarded by the member being in no group but those locked (user id, then their ids), and those
# others answered (identity.member_removal.REMOVE_ROWS).
_ELSEWHERE = "FROM idp_group_members WHERE user_id = ? AND group_id != ALL(?)"
_GUARD = f" AND NOT EXISTS (SELECT 1 {_ELSEWHERE})"


def _guarded(statement: str) -> str:
    body, returning, rest = statement.partition(" RETURNING ")
    return body + _GUARD + returning + rest


_REMOVE_ROWS = (f"WITH ended AS ({_guarded(_END_SESSIONS)}), ungranted AS ({_guarded(_DROP_GRANTS)}),"
                f" removed AS ({_guarded(_TOMBSTONE)}), revoked AS ({_guarded(_REVOKE_KEYS)}),"
                f" groups_left AS ({_guarded(_DROP_MEMBERSHIPS)})"
                " SELECT 'key', id, prefix FROM revoked UNION ALL SELECT 'group', group_id, NULL FROM groups_left"
                f" UNION ALL SELECT 'held_elsewhere', group_id, NULL {_ELSEWHERE}")
_HEAD = "SELECT seq, hash FROM audit_heads WHERE org_id = ?"
_NEW_HEAD = "UPDATE audit_heads SET seq = ?, hash = ?, last_at = ? WHERE org_id = ?"
# On PostgreSQL an event and the head's move to it are one statement (audit.log.INSERT_EVENT_MOVING_HEAD).
_MOVING_HEAD = f"WITH moved_head AS ({_NEW_HEAD}) "
_EVENT = ("INSERT INTO audit_events (id, org_id, seq, occurred_at, actor_type, actor_id, actor_display, action,"
          " target_type, target_id, target_display, changes, outcome, request_id, ip, user_agent, prev_hash, hash)"
          " VALUES (?, ?, ?, ?, 'scim_token', ?, ?, ?, 'user', ?, ?, ?, 'success', ?, ?, ?, ?, ?)")


def answer(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/scim+json")


def refused(status: int, detail: str) -> Response:
    return answer(status, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status),
                           "detail": detail})


def lookup_response(raw: Raw, filter_text: str, authorization: str, base: str) -> Response:
    """The whole `userName eq` lookup: token, user and groups in one read transaction, as a ListResponse."""
    found = FILTER.match(filter_text)
    if found is None:
        return refused(400, "userName eq only")
    raw.begin()
    try:
        token = raw.token(authorization)
        rows, groups = raw.lookup(token[1], found.group(1)) if token else ([], [])
    finally:
        raw.commit()
    if token is None:
        return refused(401, "invalid or revoked SCIM token")
    page = [resources.user_to_wire(row, base, groups) for row in rows]
    return answer(200, discovery.list_response(page, len(page), 1))


class Row:
    """A users row with the attribute names `scim.resources.user_to_wire` reads."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        (self.id, self.user_name, self.email, self.external_id, self.display_name, self.given_name,
         self.family_name, active, attributes, created, updated, self.version) = values
        self.active = bool(active)
        self.attributes = attributes if isinstance(attributes, dict) else json.loads(attributes or "{}")
        self.created_at, self.updated_at = when(created), when(updated)


def when(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


class Raw:
    """Hand-written SQL on one DBAPI connection (autocommit off on PostgreSQL; on SQLite the
    service's connections run in autocommit and take BEGIN from us).

    `gate`, on SQLite, is the database's writers' gate (identity.db_sqlite.WriterGate) and `info` the
    pooled connection's info it is held through: a write then queues on the gate before BEGIN
    IMMEDIATE and lets go after its COMMIT or ROLLBACK, as the service's writes do, so that a floor
    and the service it bounds wait for each other's writers the same way."""

    def __init__(self, connection: Any, dialect: str, gate: WriterGate | None = None,
                 info: dict[Any, Any] | None = None) -> None:
        self.connection, self.sqlite = connection, dialect == "sqlite"
        self.cursor = connection.cursor()
        self.gate, self.info = gate, info if info is not None else {}

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    def begin(self, write: bool = False) -> None:
        if self.sqlite:
            if write and self.gate is not None:
                self.gate.enter(self.info)
            self.cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def commit(self) -> None:
        if self.sqlite:
            self.cursor.execute("COMMIT")
            WriterGate.leave(self.info)
        else:
            self.connection.commit()

    def rollback(self) -> None:
        if self.sqlite:
            self.cursor.execute("ROLLBACK")
            WriterGate.leave(self.info)
        else:
            self.connection.rollback()

    def one(self, statement: str, params: tuple[Any, ...]) -> Any:
        self.cursor.execute(self.sql(statement), params)
        return self.cursor.fetchone()

    def token(self, authorization: str) -> tuple[Any, ...] | None:
        """The live token row (id, org_id, hash, revoked, name, prefix) the header presents, or None."""
        secret = authorization.partition(" ")[2].strip()
        prefix = tokens.split_prefix(secret)
        if prefix is None:
            return None
        row = self.one(_TOKEN, (prefix,))
        if row is None or row[3] is not None or not hmac.compare_digest(
                hashlib.sha256(secret.encode()).hexdigest(), row[2]):
            return None
        return tuple(row)

    def lookup(self, org_id: str, user_name: str) -> tuple[list[Row], list[tuple[str, str]]]:
        self.cursor.execute(self.sql(_USERS), (org_id, name_key(user_name)))
        rows = [Row(values) for values in self.cursor.fetchall()]
        groups: list[tuple[str, str]] = []
        if rows:
            self.cursor.execute(self.sql(_GROUPS), (rows[0].id,))
            groups = [(gid, name) for gid, name in self.cursor.fetchall()]
        return rows, groups

    def create(self, token: tuple[Any, ...], body: dict[str, Any], request_id: str, ip: str, agent: str) -> Row:
        """Insert an active user with its seat, grants, work email and two chained audit events."""
        org_id = token[1]
        now = dt.datetime.now(dt.UTC)
        stored = self.stored(now)
        name = body.get("name") or {}
        email = next((e.get("value") for e in body.get("emails") or [] if isinstance(e, dict)), None)
        user_id = str(uuid.uuid4())
        values = (user_id, body["userName"], email, body.get("externalId"), body.get("displayName"),
                  name.get("givenName"), name.get("familyName"))
        attributes = {k: v for k, v in body.items() if k not in ("schemas", "id", "meta", "active")}
        seats_used, team_id = self.one(_ORG + ("" if self.sqlite else " FOR UPDATE OF orgs"), (org_id, True, org_id))
        user_row = (values[0], org_id, values[1], name_key(values[1]), *values[2:], True, True, "scim",
                    self._json(attributes), stored, stored)
        if email and not self.sqlite:
            self.cursor.execute(self.sql(_NEW_MEMBER), (
                *user_row, org_id, user_id, name_key(email), "work", True, seats_used + 1, org_id,
                org_id, user_id, stored, org_id, user_id, team_id, stored))
        else:
            self.cursor.execute(self.sql(_SEATS), (seats_used + 1, org_id))
            self.cursor.execute(self.sql(_USER), user_row)
            if email:
                self.cursor.execute(self.sql(_EMAIL), (org_id, user_id, name_key(email), "work", True))
            self.cursor.executemany(self.sql(_GRANT),
                                    [(org_id, user_id, None, stored), (org_id, user_id, team_id, stored)])
        self._user_events(token, (user_id, values[1]), [
            ("user.created", {"user_name": values[1], "email": email, "external_id": values[3],
                              "display_name": values[4], "given_name": values[5], "family_name": values[6],
                              "active": True, "role": "member", "team_id": team_id, "source": "scim"}),
            ("seat.assigned", {"seats_used": {"before": seats_used, "after": seats_used + 1}})],
            (request_id, ip, agent), now, head_lock="")
        return Row((user_id, values[1], email, values[3], values[4], values[5], values[6], True, attributes,
                    now, now, 1))

    def delete(self, token: tuple[Any, ...], user_id: str, request_id: str, ip: str, agent: str) -> bool:
        """Remove a live user as `users.remove_user` does for a SCIM DELETE (tests/scim/test_delete_statements.py
        lists its statements): the org locked, the user and its role read under it, keys revoked,
        sign-in sessions ended, grants and group memberships removed and the user's row tombstoned
        (one statement on PostgreSQL), the seat freed, two chained audit events. False when there is
        no such live user."""
        org_id = token[1]
        now = dt.datetime.now(dt.UTC)
        stored = self.stored(now)
        seats_used = self.one(_SEATS_LOCK + ("" if self.sqlite else " FOR NO KEY UPDATE"), (org_id,))[0]
        if not self.sqlite:  # the service's savepoint before the member's locks (identity.member_removal)
            self.cursor.execute("SAVEPOINT member_locks")
        user = self.one(*((_LIVE_USER_ROLE, (user_id, org_id)) if self.sqlite
                          else (_LOCK_USER_ROLE, (user_id, user_id, org_id))))
        if user is None:
            return False
        tombstone = (stored, stored, user_id)
        if self.sqlite:
            for statement, params in ((_REVOKE_KEYS, (user_id,)), (_END_SESSIONS, (user_id,)),
                                      (_DROP_GRANTS, (user_id,)), (_DROP_MEMBERSHIPS, (user_id,)),
                                      (_TOMBSTONE, tombstone)):
                self.cursor.execute(self.sql(statement), params)
                if "RETURNING" in statement:
                    self.cursor.fetchall()
        else:
            held = sorted(user[4] or [])
            while True:  # again with the groups of memberships added while the row was waited for
                guard = (user_id, held)
                self.cursor.execute(self.sql(_REMOVE_ROWS), (user_id, *guard, user_id, *guard, *tombstone, *guard,
                                                             user_id, *guard, user_id, *guard, *guard))
                elsewhere = [row[1] for row in self.cursor.fetchall() if row[0] == "held_elsewhere"]
                if not elsewhere:
                    break
                # The member's groups and row let go, then locked again: the groups in id order, then the row.
                self.cursor.execute("ROLLBACK TO SAVEPOINT member_locks")
                held = sorted({*held, *elsewhere})
                self.cursor.execute(self.sql("SELECT id FROM idp_groups WHERE id = ANY(?) ORDER BY id"
                                             " FOR NO KEY UPDATE"), (held,))
                self.cursor.execute(self.sql("SELECT version FROM users WHERE id = ? FOR NO KEY UPDATE"), (user_id,))
                self.cursor.fetchall()
        self.cursor.execute(self.sql(_SEATS), (seats_used - 1, org_id))
        self._user_events(token, (user_id, user[1]), [
            ("seat.released", {"seats_used": {"before": seats_used, "after": seats_used - 1}}),
            ("user.deleted", {"user_name": user[1], "role": user[3]})],
            (request_id, ip, agent), now, head_lock="" if self.sqlite else " FOR UPDATE")
        return True

    def _user_events(self, token: tuple[Any, ...], user: tuple[str, str], items: list[tuple[str, dict[str, Any]]],
                     request: tuple[str, str, str], now: dt.datetime, head_lock: str) -> None:
        """Append (action, changes) events by the SCIM token on the user to the org's chain, and move its head."""
        token_id, org_id, _, _, token_name, prefix = token
        (user_id, user_name), (request_id, ip, agent) = user, request
        stored = self.stored(now)
        seq, previous = self.one(_HEAD + head_lock, (org_id,))
        actor = f"SCIM token {token_name} ({prefix})"
        events = []
        for action, changes in items:
            seq += 1  # the head holds the last event's number
            fields = {"id": str(uuid.uuid4()), "org_id": org_id, "seq": seq, "occurred_at": now,
                      "actor_type": "scim_token", "actor_id": token_id, "actor_display": actor, "action": action,
                      "target_type": "user", "target_id": user_id, "target_display": user_name, "changes": changes,
                      "outcome": "success", "request_id": request_id, "ip": ip, "user_agent": agent,
                      "prev_hash": previous}
            previous = event_hash(fields)
            events.append((fields["id"], org_id, seq, stored, token_id, actor, action, user_id, user_name,
                           self._json(changes), request_id, ip, agent, fields["prev_hash"], previous))
        if self.sqlite:
            self.cursor.execute(self.sql(_NEW_HEAD), (seq, previous, stored, org_id))
            self.cursor.executemany(self.sql(_EVENT), events)
        else:  # each event with the head's move to it, one statement each, sent as one batch (audit.log)
            self.cursor.executemany(self.sql(_MOVING_HEAD + _EVENT), [
                (event[2], event[-1], stored, org_id, *event) for event in events])

    def stored(self, now: dt.datetime) -> Any:
        """A time as the service's columns hold it: naive UTC (a string on SQLite)."""
        return now.replace(tzinfo=None) if not self.sqlite else str(now.replace(tzinfo=None))

    def _json(self, value: dict[str, Any]) -> Any:
        if self.sqlite:
            return json.dumps(value)
        from psycopg.types.json import Json

        return Json(value)


# The usage floor (bench_usage.py): what `usage.record_usage` writes for one accepted record, as the same
# statements, in one write transaction: the wallet locked, the request id looked up, the ledger row,
# the wallet's new balance and spend, and one chained audit event (the service's per-call summary).
_GATEWAY = "SELECT id, name, secret_hash FROM gateway_credentials WHERE prefix = ? AND revoked_at IS NULL"
_KEY = "SELECT org_id, team_id, user_id, status FROM api_keys WHERE id = ?"
_WALLET = ("SELECT balance_micros, period_spend_micros, spend_limit_micros, discount_percent, period_start"
           " FROM wallets WHERE team_id = ?")
_BOOKED = "SELECT amount_micros FROM wallet_entries WHERE request_id = ?"
_ENTRY = ("INSERT INTO wallet_entries (org_id, team_id, kind, amount_micros, cost_micros, discount_percent, key_id,"
          " user_id, model, request_id, reference, period_start, actor_type, actor_id, created_at)"
          " VALUES (?, ?, 'usage', ?, ?, ?, ?, ?, ?, ?, NULL, ?, 'system', ?, ?)")
_SPEND = "UPDATE wallets SET balance_micros = ?, period_spend_micros = ?, updated_at = ? WHERE team_id = ?"
# On PostgreSQL, as the service sends them since 2026-12-07 (identity.usage): the key with its
# wallet locked and the request id's booking in one statement; the ledger row with the wallet's
# UPDATE in one.
# Since the seventeenth session the key's team row is locked too (FOR KEY SHARE, after the wallet's) and a
# deleted org's wallet is not found, as identity.usage.KEYED_LOCK does.
_KEYED_LOCK = ("SELECT k.org_id, k.team_id, k.user_id, w.balance_micros, w.period_spend_micros, w.spend_limit_micros,"
               " w.discount_percent, w.period_start, e.amount_micros FROM api_keys k"
               " JOIN wallets w ON w.team_id = k.team_id JOIN orgs o ON o.id = w.org_id"
               " JOIN teams t ON t.id = w.team_id"
               " LEFT JOIN wallet_entries e ON e.request_id = ? AND e.kind = 'usage'"
               " WHERE k.id = ? AND o.deleted_at IS NULL FOR UPDATE OF w FOR KEY SHARE OF t")
_ENTRY_AND_SPEND = f"WITH new_entry AS ({_ENTRY}) {_SPEND}"
_USAGE_EVENT = ("INSERT INTO audit_events (id, org_id, seq, occurred_at, actor_type, actor_id, actor_display, action,"
                " target_type, target_id, target_display, changes, outcome, request_id, ip, user_agent, prev_hash,"
                " hash) VALUES (?, ?, ?, ?, 'system', ?, ?, 'wallet.usage_recorded', 'team', ?, ?, ?, 'success',"
                " ?, ?, ?, ?, ?)")


def debit(raw: Raw, authorization: str, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One usage record debited with hand-written SQL: (status, answer). No validation beyond what
    the statements need, no discount rounding rules, no limits but the team's, no key-check refusal
    kept: only the database work of an accepted debit."""
    secret = authorization.partition(" ")[2].strip()
    raw.begin(write=True)
    try:
        gateway = raw.one(_GATEWAY, (tokens.split_prefix(secret) or "",))
        if gateway is None or not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), gateway[2]):
            raw.rollback()
            return 401, {"detail": "a gateway credential is required"}
        if raw.sqlite:
            org_id, team_id, user_id, _status = raw.one(_KEY, (record["key_id"],))
            balance, spend, limit, discount, period = raw.one(_WALLET, (team_id,))
            booked = raw.one(_BOOKED, (record["request_id"],))
        else:
            org_id, team_id, user_id, balance, spend, limit, discount, period, amount = raw.one(
                _KEYED_LOCK, (record["request_id"], record["key_id"]))
            booked = None if amount is None else (amount,)
        debited = record["cost_micros"] * (100 - discount) // 100
        early = _not_debited(None if booked is None else booked[0], debited, balance, spend, limit)
        if early is not None:
            raw.commit()
            return early
        now = dt.datetime.now(dt.UTC)
        stored = raw.stored(now)
        entry, spent = _entry(record, gateway[0], org_id, team_id, user_id, debited, balance, spend, discount, period,
                              stored)
        if raw.sqlite:
            raw.cursor.execute(raw.sql(_ENTRY), entry)
            raw.cursor.execute(raw.sql(_SPEND), spent)
        else:
            raw.cursor.execute(raw.sql(_ENTRY_AND_SPEND), (*entry, *spent))
        seq, previous = raw.one(_HEAD + ("" if raw.sqlite else " FOR UPDATE"), (org_id,))
        event = _usage_event(raw, record, gateway, org_id, team_id, debited, balance, now, stored, seq, previous)
        if raw.sqlite:
            raw.cursor.execute(raw.sql(_NEW_HEAD), (seq + 1, event[-1], stored, org_id))
            raw.cursor.execute(raw.sql(_USAGE_EVENT), event)
        else:
            raw.cursor.execute(raw.sql(_MOVING_HEAD + _USAGE_EVENT), (seq + 1, event[-1], stored, org_id, *event))
    except BaseException:
        raw.rollback()
        raise
    raw.commit()
    return 200, {"status": "accepted", "debited_micros": debited, "balance_micros": balance - debited}


def _not_debited(booked: int | None, debited: int, balance: int, spend: int,
                 limit: int | None) -> tuple[int, dict[str, Any]] | None:
    """The answer of a record not to debit (its request id booked, or the balance or limit short), else None."""
    if booked is not None:
        return 200, {"status": "duplicate", "debited_micros": -booked}
    if debited > balance or (limit is not None and spend + debited > limit):
        return 429, {"status": "balance_exhausted"}
    return None


Binds = tuple[Any, ...]


def _entry(record: dict[str, Any], gateway_id: Any, org_id: str, team_id: str, user_id: str | None, debited: int,
           balance: int, spend: int, discount: int, period: Any, stored: Any) -> tuple[Binds, Binds]:
    """An accepted debit's ledger row and its wallet's new balance and spend, as `_ENTRY` and `_SPEND` bind them."""
    entry = (org_id, team_id, -debited, record["cost_micros"], discount, record["key_id"], user_id, record["model"],
             record["request_id"], period, f"gateway:{gateway_id}", stored)
    return entry, (balance - debited, spend + debited, stored, team_id)


def _usage_event(raw: Raw, record: dict[str, Any], gateway: tuple[Any, Any], org_id: str, team_id: str, debited: int,
                 balance: int, now: dt.datetime, stored: Any, seq: int, previous: str) -> tuple[Any, ...]:
    """The debit's chained `wallet.usage_recorded` event after the head (`seq`, `previous`), for `_USAGE_EVENT`."""
    actor_id = f"gateway:{gateway[0]}"
    changes = {"records": 1, "cost_micros": record["cost_micros"], "debited_micros": debited,
               "teams": {team_id: {"debited_micros": debited, "balance_micros": balance - debited}},
               "request_ids": [record["request_id"]]}
    fields = {"id": str(uuid.uuid4()), "org_id": org_id, "seq": seq + 1, "occurred_at": now,
              "actor_type": "system", "actor_id": actor_id, "actor_display": f"gateway {gateway[1]}",
              "action": "wallet.usage_recorded", "target_type": "team", "target_id": team_id,
              "target_display": team_id, "changes": changes, "outcome": "success", "request_id": "",
              "ip": "", "user_agent": "", "prev_hash": previous}
    digest = event_hash(fields)
    return (fields["id"], org_id, seq + 1, stored, actor_id, fields["actor_display"], team_id, team_id,
            raw._json(changes), "", "", "", previous, digest)


# The same debit in the fewest statements this schema allows on PostgreSQL, two (bench_usage.py's "floor in
# two statements"): the credential, the key, its wallet locked, the request id's booking and the org's audit
# head locked in one read; the ledger row, the wallet, the head and the event in one write. The service does
# not send these: reading the credential and locking the head with the wallet would hold the org's audit
# head from the first statement and take it before the wallet's lock's waiters. It bounds what any debit of
# one record per call, with this schema's rows and its audit chain, reaches here.
_FUSED_READ = ("SELECT g.id, g.name, g.secret_hash, k.org_id, k.team_id, k.user_id, w.balance_micros,"
               " w.period_spend_micros, w.spend_limit_micros, w.discount_percent, w.period_start, e.amount_micros,"
               " h.seq, h.hash FROM gateway_credentials g JOIN api_keys k ON k.id = ?"
               " JOIN wallets w ON w.team_id = k.team_id JOIN audit_heads h ON h.org_id = k.org_id"
               " LEFT JOIN wallet_entries e ON e.request_id = ? AND e.kind = 'usage'"
               " WHERE g.prefix = ? AND g.revoked_at IS NULL FOR UPDATE OF w, h")
_FUSED_WRITE = (f"WITH new_entry AS ({_ENTRY}), spent AS ({_SPEND}), moved_head AS ({_NEW_HEAD}) {_USAGE_EVENT}")


def debit_fused(raw: Raw, authorization: str, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """`debit` in two statements (PostgreSQL only): (status, answer)."""
    secret = authorization.partition(" ")[2].strip()
    try:
        row = raw.one(_FUSED_READ, (record["key_id"], record["request_id"], tokens.split_prefix(secret) or ""))
        if row is None or not hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), row[2]):
            raw.rollback()
            return 401, {"detail": "a gateway credential is required"}
        gid, gname, _, org_id, team_id, user_id, balance, spend, limit, discount, period, amount, seq, previous = row
        debited = record["cost_micros"] * (100 - discount) // 100
        early = _not_debited(amount, debited, balance, spend, limit)
        if early is not None:
            raw.commit()
            return early
        now = dt.datetime.now(dt.UTC)
        stored = raw.stored(now)
        entry, spent = _entry(record, gid, org_id, team_id, user_id, debited, balance, spend, discount, period, stored)
        event = _usage_event(raw, record, (gid, gname), org_id, team_id, debited, balance, now, stored, seq, previous)
        raw.cursor.execute(raw.sql(_FUSED_WRITE), (*entry, *spent, seq + 1, event[-1], stored, org_id, *event))
    except BaseException:
        raw.rollback()
        raise
    raw.commit()
    return 200, {"status": "accepted", "debited_micros": debited, "balance_micros": balance - debited}
