"""The web console: server-rendered pages on the admin API's domain services (DESIGN.md 9).

One module per page, each with its blueprint `bp`; `PAGES` lists them for the app factory.
identity.web.console.common is what a page is built from (its docstring says how to add one).
"""

from __future__ import annotations

from flask import Blueprint

from identity.web.console import (
    arrival,
    audit,
    billing,
    idp,
    idp_credentials,
    idp_mappings,
    invitation,
    invite,
    keys,
    members,
    teams,
    wallet,
)
from identity.web.console.common import http_error

__all__ = ["PAGES", "http_error"]

PAGES: tuple[Blueprint, ...] = (arrival.bp, teams.bp, members.bp, invite.bp, invitation.bp, keys.bp, idp.bp,
                                idp_credentials.bp, idp_mappings.bp, billing.bp, audit.bp,
                                wallet.bp)
