"""Concurrent PATCHes of one group, as an IdP's parallel workers send them during a first sync.

On PostgreSQL, against the app served by several threads of one process and by `identity serve`
with several worker processes (each request its own connection and transaction): every PATCH succeeds, whether it adds members another PATCH adds at
the same moment or removes members another removes. Adding a member already there and removing
one who is gone change nothing, also in a race; each real change is granted and audited once.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity.db import Database
from identity.models import IdpGroupMember, RoleGrant
from tests.identity.test_serve import BIN, _free_port, _stop, _wait_healthy
from tests.live import serving
from tests.scim.client import PATCH, Scim, scim_for

WORKERS = 8
ROUNDS = ("add", "add", "remove", "add and remove", "remove")


@pytest.fixture(params=["threads", "identity serve"])
def origin(request: pytest.FixtureRequest, app: Flask, db: Database, tmp_path: Path) -> Iterator[str]:
    """The app served by threads of one process, or as `identity serve` runs it: gunicorn, 4 worker processes."""
    if request.param == "threads":
        with serving(app, "scim-concurrent-groups") as found:
            yield found
        return
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min", "IDENTITY_DATA_DIR": str(tmp_path),
           "BASE_URL": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _patch_all_at_once(origin: str, token: str, group_id: str, bodies: list[list[dict[str, Any]]]) -> list[int]:
    """Send one PATCH per body, each from its own thread and connection, released together."""
    start, statuses = threading.Barrier(len(bodies)), [0] * len(bodies)
    host = urlsplit(origin)

    def send(index: int) -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        body = json.dumps({"schemas": [PATCH], "Operations": bodies[index]})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        start.wait()
        try:
            conn.request("PATCH", f"/scim/v2/Groups/{group_id}", body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
            statuses[index] = response.status
            if response.status != 204:
                print(response.status, text[:300])
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def _members(values: list[str]) -> list[dict[str, str]]:
    return [{"value": v} for v in values]


@pytest.mark.postgres_only("the race needs concurrent writers; SQLite runs one write transaction at a time")
def test_parallel_patches_adding_and_removing_overlapping_members_all_succeed(
        db: Database, app: Flask, origin: str, system: Actor) -> None:
    scim: Scim = scim_for(db, app.test_client(), system, "Racy")
    people = [scim.create_user(f"u{i:02}@racy.test")["id"] for i in range(WORKERS * 4)]
    group = scim.create_group("Racers", people[:WORKERS])["id"]
    expected = set(people[:WORKERS])
    fresh = iter(people[WORKERS:])
    for kind in ROUNDS:
        # Every worker adds the same new members (each in its own order), removes the same old ones, or both.
        adding = [next(fresh) for _ in range(WORKERS // 2)] if "add" in kind else []
        removing = sorted(expected)[:WORKERS // 2] if "remove" in kind else []
        bodies: list[list[dict[str, Any]]] = [[] for _ in range(WORKERS)]
        for i, body in enumerate(bodies):
            if removing:
                body += [{"op": "remove", "path": f'members[value eq "{removing[i % len(removing)]}"]'},
                         {"op": "remove", "path": "members", "value": _members(removing)}]
            if adding:
                body.append({"op": "add", "path": "members", "value": _members(adding[i % 4:] + adding[:i % 4])})
        statuses = _patch_all_at_once(origin, scim.token, group, bodies)
        assert statuses == [204] * WORKERS, (kind, statuses)
        expected = (expected | set(adding)) - set(removing)

    with db.reading() as session:
        members = set(session.scalars(select(IdpGroupMember.user_id).where(IdpGroupMember.group_id == group)))
        grants = Counter(session.scalars(select(RoleGrant.user_id).where(RoleGrant.source_ref == group)))
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.target_id == group, AuditEvent.action.in_(["group.members_added", "group.members_removed"]))))
    assert members == expected
    assert grants == Counter({uid: 1 for uid in expected})  # the mirrored team's grant, once each
    added = Counter(uid for e in events if e.action == "group.members_added" for uid in e.changes["members"])
    removed = Counter(uid for e in events if e.action == "group.members_removed" for uid in e.changes["members"])
    assert set(added.values()) == {1} and set(removed.values()) == {1}  # each real change audited once
    assert set(added) - set(removed) == expected
