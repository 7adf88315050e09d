"""The closed words (identity.vocabulary, identity.actions, audit.actions): names kept, values stored as before."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import StatementError

from audit import Actor
from audit.actions import AuditAction
from identity import roles
from identity.actions import Action
from identity.db import Database
from identity.errors import InvalidValue
from identity.models import ApiKey, Org, RoleGrant, User
from identity.orgs import NewOrg
from identity.vocabulary import GrantSource, KeyStatus, Role
from tests.factories import provision

ROOT = Path(__file__).resolve().parents[2]
WEB_SHELL: set[str] = set()  # the web shell (identity/web/) is held to the same rule: it records nothing itself


def _documented_actions() -> set[str]:
    """The action names of docs/audit.md section 2's table: what exported logs promise."""
    doc = (ROOT / "docs" / "audit.md").read_text()
    table = doc.split("## 2. Actions", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([a-z_]+\.[a-z_]+)`", cell)}


def test_every_action_is_documented_and_every_documented_action_is_a_member() -> None:
    documented = _documented_actions()
    assert len(documented) > 40  # the table was read, not missed
    assert {a.value for a in Action} | {a.value for a in AuditAction} == documented


@pytest.mark.parametrize("actions", [Action, AuditAction])
def test_actions_are_named_after_their_values(actions: type[Action] | type[AuditAction]) -> None:
    assert {a.name: a.value for a in actions} == {a.value.replace(".", "_").upper(): a.value for a in actions}


def _action_literals(path: Path) -> list[str]:
    """The string literals passed as the action of `record(...)` calls in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "record" \
                and len(node.args) >= 3:
            found += [f"{path.relative_to(ROOT)}:{c.lineno} {c.value}" for c in ast.walk(node.args[2])
                      if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return found


def test_services_record_actions_as_members_not_strings() -> None:
    modules = [p for package in ("identity", "audit", "scim", "saml") for p in (ROOT / package).rglob("*.py")
               if str(p.relative_to(ROOT)) not in WEB_SHELL and "migrations" not in p.parts]
    assert [hit for module in modules for hit in _action_literals(module)] == []


def test_roles_keep_their_order_and_parse_to_members() -> None:
    assert roles.ROLES == ("viewer", "member", "admin", "owner")
    assert roles.RANK == {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
    assert roles.parse_role(" Developer ") is Role.MEMBER
    assert roles.parse_role("OWNER") is Role.OWNER
    with pytest.raises(InvalidValue, match="expected one of viewer, member, admin$"):
        roles.parse_role("owner", allowed=(Role.VIEWER, Role.MEMBER, Role.ADMIN))


def test_words_are_stored_by_value_and_read_back_as_members(db: Database, acme: NewOrg, system: Actor) -> None:
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    with db.transaction() as session:
        raw = session.execute(text("SELECT role, source FROM role_grants WHERE user_id = :u AND team_id IS NULL"),
                              {"u": ann.id}).one()
        grant = session.scalars(select(RoleGrant).where(RoleGrant.user_id == ann.id,
                                                        RoleGrant.team_id.is_(None))).one()
        org = session.get_one(Org, acme.org.id)
        user = session.get_one(User, ann.id)
    assert (type(raw.role), raw.role, raw.source) == (str, "member", "manual")
    assert (grant.role, grant.source, user.source, org.default_role) == (
        Role.MEMBER, GrantSource.MANUAL, GrantSource.MANUAL, Role.MEMBER)
    assert all(isinstance(word, Role | GrantSource) for word in (grant.role, grant.source, org.default_role))


def test_a_word_outside_its_enum_is_not_written(db: Database, acme: NewOrg) -> None:
    with pytest.raises(StatementError, match="'superuser' is not a valid Role"), db.transaction() as session:
        session.execute(update(Org).where(Org.id == acme.org.id).values(default_role="superuser"))
    with db.transaction() as session:
        assert session.get_one(Org, acme.org.id).default_role is Role.MEMBER
    with db.transaction() as session:  # the same column type filters by the member or its word alike
        assert session.scalars(select(ApiKey.id).where(ApiKey.status == KeyStatus.ACTIVE)).all() == []


def test_the_actions_design_names_for_the_audit_event_exist(db: Database, acme: NewOrg, system: Actor) -> None:
    """DESIGN.md 6 names an event's action by example: `user.created`, `member.role_changed`, `seat.charged`.
    The first two are recorded; a seat charge (DESIGN 3.4: "Every charge is a ledger row ... and an audit
    event") is recorded as `seat.purchased` or `seat.renewed`, and no `seat.charged` exists, so an auditor's
    filter written from the design (`--action seat.charged`) silently selects nothing."""
    from audit import events
    from identity import audit_filters

    for number in range(3):  # 3 seats are included, the owner holds one: the fourth member buys one, prorated
        provision(db, system, acme.org.id, f"m{number}@acme.test")
    with db.reading() as session:
        selection = audit_filters.selection_of(session, acme.org.id, audit_filters.filters_from({}.get,
                                                                                                ("seat.charged",)))
        assert events.count(session, selection) == 1  # the one prorated charge
    named = {"user.created", "member.role_changed"}  # and seat.charged: a filter's name for both charges
    assert named <= {a.value for a in Action}, sorted(named - {a.value for a in Action})
    assert set(audit_filters.ACTION_ALIASES["seat.charged"]) == {Action.SEAT_PURCHASED, Action.SEAT_RENEWED}
