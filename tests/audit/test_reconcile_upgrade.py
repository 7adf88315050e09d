"""Reconciliation while old and new releases write the log together (a rolling upgrade), and the
revocation times of credentials (docs/audit.md, section 6)."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from audit import Actor, clock
from audit.log import Target, record
from identity import gateway, invitations, scim_credentials, tokens
from identity.actions import Action
from identity.db import Database
from identity.models import GatewayCredential, Invitation, ScimToken
from identity.orgs import NewOrg
from identity.reconcile import Finding, reconcile, reconcile_operator
from identity.replay import HANDLERS, UNKNOWN, Entity, Expected


def findings(db: Database, org_id: str) -> list[Finding]:
    with db.reading() as session:
        return reconcile(session, org_id)


def _older_workers_resend(db: Database, actor: Actor, org_id: str, invitation_id: str) -> None:
    """What `invitations.resend` did before 2026-12-07: a new link, and an event without its fingerprint."""
    new = tokens.generate("inv")
    with db.transaction() as session:
        invitation = session.get(Invitation, invitation_id)
        assert invitation is not None
        invitation.prefix, invitation.secret_hash = new.prefix, new.hash
        invitation.expires_at = clock.now() + invitations.LIFETIME
        record(session, actor, Action.INVITATION_RESENT, Target("invitation", invitation.id, invitation.email),
               {"status": {"before": "pending", "after": "pending"}, "expires_at": invitation.expires_at.isoformat(),
                "mails_cancelled": 1, "mail_id": None}, org_id=org_id)


def test_an_older_workers_resend_after_a_newer_workers_invitation_reconciles(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """The newer worker's invitation.created recorded the first link's fingerprint; the older
    worker's resend changed the hash and recorded none: the new hash is unknown, not the old one's."""
    with db.transaction() as session:
        invitation, _ = invitations.invite(session, system, acme.org.id, email="frank@acme.test")
    _older_workers_resend(db, system, acme.org.id, invitation.id)
    assert findings(db, acme.org.id) == []
    stranger = Actor("system", "older-worker", "another caller", org_id=acme.org.id)
    _older_workers_resend(db, stranger, acme.org.id, invitation.id)  # before 2026-12-06 the sender stayed
    assert findings(db, acme.org.id) == []
    owner = Actor("user", acme.owner.id, "owner", org_id=acme.org.id, role="owner")
    with db.transaction() as session:  # a newer worker's resend records one again: checked again
        invitations.resend(session, owner, acme.org.id, invitation.id)  # and the owner becomes its sender
    assert findings(db, acme.org.id) == []
    with db.begin() as conn:
        conn.execute(update(Invitation).where(Invitation.id == invitation.id).values(
            secret_hash=tokens.digest("inv_0123456789ab_known-to-the-insider")))
    found = findings(db, acme.org.id)
    assert [f.kind for f in found] == ["invitation"] and "invitation.resent" in found[0].problem, \
        [str(f) for f in found]


# Every event that gives a credential a hash, and the entities its handler fills.
HASHING = {
    Action.API_KEY_CREATED: ("api_keys", {"name": "k", "team_id": None, "user_id": None, "scopes": []}),
    Action.SCIM_TOKEN_CREATED: ("scim_tokens", {"name": "t"}),
    Action.SCIM_CLIENT_CREATED: ("scim_clients", {"name": "c"}),
    Action.GATEWAY_CREDENTIAL_CREATED: ("gateway_credentials", {"name": "g"}),
    Action.GATEWAY_CREDENTIAL_BASELINE: ("gateway_credentials", {"name": "g", "revoked": False}),
    Action.INVITATION_CREATED: ("invitations", {"email": "e@x.test", "role": "member", "team_id": None}),
    Action.INVITATION_RESENT: ("invitations", {"status": {"before": "expired", "after": "pending"}}),
}


@pytest.mark.parametrize("action", list(HASHING))
def test_every_event_that_gives_a_hash_without_its_fingerprint_leaves_it_unknown(action: str) -> None:
    """Whatever fingerprint an earlier event recorded of the credential's hash, this one replaced the hash."""
    entities, changes = HASHING[action]
    x = Expected("org", {})
    getattr(x, entities)["id"] = Entity(created=1, fields={tokens.FINGERPRINT: "0" * 32})
    event: Any = SimpleNamespace(action=action, seq=2, changes=changes, target_id="id", target_display="prefix",
                                 actor_id="actor", occurred_at=dt.datetime.now(dt.UTC))
    HANDLERS[action](x, event)
    assert getattr(x, entities)["id"].fields[tokens.FINGERPRINT] is UNKNOWN


def test_an_older_workers_revocation_leaves_its_time_unchecked_but_not_the_revocation(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """A scim_token.revoked written before 2026-12-07 records no `revoked_at`."""
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id, name="Okta")
    with db.transaction() as session:  # as revoke_scim_token did then
        row = session.get(ScimToken, token.id)
        assert row is not None
        row.revoked_at = clock.now()
        record(session, system, Action.SCIM_TOKEN_REVOKED, Target("scim_token", row.id, row.prefix), {},
               org_id=acme.org.id)
    sql(db, update(ScimToken).where(ScimToken.id == token.id).values(revoked_at=clock.now() + dt.timedelta(days=9)))
    assert findings(db, acme.org.id) == []
    sql(db, update(ScimToken).where(ScimToken.id == token.id).values(revoked_at=None))
    assert [f.problem.split(",")[0] for f in findings(db, acme.org.id)] == ["revoked is False"]


def test_a_credential_revoked_before_the_operators_chain_began_is_held_to_its_baselines_time(
        db: Database, system: Actor) -> None:
    """gateway_credential.baseline records a revoked credential's `revoked_at` as the chain found it."""
    revoked_at = clock.now() - dt.timedelta(days=3)
    old = str(uuid.uuid4())
    with db.transaction() as session:  # an older release made and revoked it, with no event
        session.add(GatewayCredential(id=old, name="older", prefix="gw_0123456789ab", secret_hash="0" * 64,
                                      created_at=clock.now() - dt.timedelta(days=30), revoked_at=revoked_at))
    with db.transaction() as session:
        gateway.create_credential(session, system, name="edge")  # begins the chain: the baseline
    with db.reading() as session:
        assert reconcile_operator(session) == []
    sql(db, update(GatewayCredential).where(GatewayCredential.id == old).values(
        revoked_at=revoked_at + dt.timedelta(days=1)))
    with db.reading() as session:
        found = reconcile_operator(session)
    assert [(f.entity_id, f.problem.split(" is ")[0]) for f in found] == [(old, "revoked_at")], \
        [str(f) for f in found]
    assert "gateway_credential.baseline" in found[0].problem


def sql(db: Database, *statements: Any) -> None:
    with db.begin() as conn:
        for statement in statements:
            conn.execute(statement)
