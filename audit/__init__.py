"""The audit log: events recorded in the changing transaction, chained per org by hash."""

from audit.actor import Actor
from audit.log import record

__all__ = ["Actor", "record"]
