"""The domain's declarative base and the metadata of every table the migrations build.

The domain's `Base` and its metadata are its own (identity.models, identity.group_models, identity.credential_models and
saml.models use them). Audit tables live on `audit.models.Base`, with the same naming conventions
and column types but no foreign keys into these tables: events outlive everything they describe.
`METADATAS` names both, for Alembic and for whatever compares the models with the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BindParameter, MetaData, String, Table, bindparam
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute

from audit import models as audit_models
from audit.models import NAMING, UTCDateTime

UUID = String(36)


class Base(DeclarativeBase):
    """The domain's declarative base: its own metadata, audit's naming conventions and column types."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


# Every table the migrations build: the domain's (with saml.models') and the audit log's.
METADATAS = (Base.metadata, audit_models.Base.metadata)


def bound_columns(table: Table, prefix: str) -> dict[str, BindParameter[Any]]:
    """The table's columns but a generated id, each bound under a name of its own (`prefix` +
    column): the VALUES of a plain INSERT built once that can also run inside another statement
    (a data-modifying WITH) beside others' parameters."""
    return {column.key: bindparam(prefix + column.key, type_=column.type) for column in table.columns
            if not (column.primary_key and column.autoincrement is True)}


def max_length(attribute: QueryableAttribute[Any]) -> int:
    """The most characters a String column holds (`max_length(User.given_name)`): what is checked
    before a value from outside is stored, so that SQLite, which keeps any length, answers as
    PostgreSQL's VARCHAR(n) does, and the bound is written in the model only."""
    length = getattr(attribute.expression.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{attribute} is not a bounded String column")
    return length


def fits(value: str | None, attribute: QueryableAttribute[Any]) -> bool:
    """Tell whether `value` (None: nothing to store) fits the String column `attribute`."""
    return value is None or len(value) <= max_length(attribute)
