"""Every row of every table, to compare before and after what must change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from identity.db import Database
from identity.models import METADATAS


def snapshot_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.reading() as session:
        return {table.name: sorted(map(tuple, session.execute(select(table))), key=repr)
                for metadata in METADATAS for table in metadata.sorted_tables}
