"""Adding members costs what the change costs: the same pages whether the group is big or small.

Counted as the pages SQLite writes to its WAL, which is what a commit syncs: a key that began
with the group and ended with the user scattered a big group's new members over its whole range
(issue #4: adding 1,000 members to a group of 100,000 must be no slower than to a group of 1,000).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert

from audit import Actor
from identity import group_membership, groups
from identity.db import Database
from identity.models import User
from identity.orgs import NewOrg

BIG, SMALL, ADDED = 20_000, 200, 200
PAGE = 4096 + 24  # a WAL frame: the page and its header


def _seed_users(db: Database, org_id: str, count: int) -> list[str]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with db.begin() as conn:
        conn.execute(insert(User.__table__), [
            {"id": uid, "org_id": org_id, "user_name": f"u{i}@pages.test", "user_name_key": f"u{i}@pages.test",
             "email": f"u{i}@pages.test",
             "active": True, "has_seat": False, "source": "scim", "attributes": {}, "created_at": now,
             "updated_at": now, "version": 1} for i, uid in enumerate(ids)])
    return ids


def _wal_pages_of(db: Database, work) -> int:
    """Checkpoint the WAL empty, run `work` in one transaction, return the pages it wrote."""
    path = Path(db.engine.url.database or "")
    wal = Path(f"{path}-wal")
    raw = sqlite3.connect(path)
    try:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()
    assert not wal.exists() or wal.stat().st_size == 0
    with db.transaction() as session:
        work(session)
    return wal.stat().st_size // PAGE


@pytest.mark.sqlite_only("counts the pages of SQLite's WAL; PostgreSQL's B-trees order a group's rows the same way")
def test_adding_members_writes_as_many_pages_into_a_big_group_as_into_a_small_one(
        db: Database, acme: NewOrg, system: Actor) -> None:
    ids = _seed_users(db, acme.org.id, BIG + SMALL + 2 * ADDED)
    made = {}
    with db.transaction() as session:
        for label, members in (("big", ids[:BIG]), ("small", ids[BIG:BIG + SMALL])):
            made[label] = groups.create_group(session, system, acme.org.id, display_name=f"{label} group",
                                              member_ids=members).id
    db.analyze()
    fresh = ids[BIG + SMALL:]
    pages = {}
    for label, chunk in (("big", fresh[:ADDED]), ("small", fresh[ADDED:])):
        pages[label] = _wal_pages_of(db, lambda session, label=label, chunk=chunk: group_membership.add_members(
            session, system, acme.org.id, made[label], chunk))
    # Keyed (group, user), the big group's three indexes took ~130 more leaf pages each.
    assert pages["big"] <= 1.15 * pages["small"], pages
    # And removing them again is as cheap as well.
    removed = {label: _wal_pages_of(db, lambda session, label=label, chunk=chunk: group_membership.remove_members(
        session, system, acme.org.id, made[label], chunk))
        for label, chunk in (("big", fresh[:ADDED]), ("small", fresh[ADDED:]))}
    assert removed["big"] <= 1.15 * removed["small"], removed
