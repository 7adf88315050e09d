"""Reconciliation while old and new releases write the log together (a rolling upgrade), and the
revocation times of credentials (docs/audit.md, section 6)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from audit import Actor, clock
from audit.log import Target, record
from identity import invitations, tokens
from identity.actions import Action
from identity.db import Database
from identity.models import Invitation
from identity.orgs import NewOrg
from identity.reconcile import Finding, reconcile
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
    with db.transaction() as session:  # a newer worker's resend records one again: checked again
        invitations.resend(session, system, acme.org.id, invitation.id)
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
                                 occurred_at=dt.datetime.now(dt.UTC))
    HANDLERS[action](x, event)
    assert getattr(x, entities)["id"].fields[tokens.FINGERPRINT] is UNKNOWN
