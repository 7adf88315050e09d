"""SAML identities keyed on (IdP entity id, persistent NameID): the email attribute links once, never chooses.

The attacker here is an IdP user who may edit their own email attribute (many IdPs let people
edit their profile) and who wants to land in someone else's account.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import sessions, users
from identity.models import User
from identity.web import cookies
from saml import once
from saml.models import SamlIdentity
from tests.factories import provision
from tests.saml.conftest import IDP_ENTITY_ID, Sso, configure
from tests.saml.idp import TestIdP
from tests.saml.test_sign_in_statements import JIT_AFTER, JIT_BEFORE, RETURNING
from tests.statements import audit_at_commit, new_member_rows, statements

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def _sign_in(sso: Sso, name_id: str, email: str | None, **options: Any) -> Any:
    attributes = {"email": [email]} if email is not None else {}
    return sso.sp_login(name_id=name_id, name_id_format=PERSISTENT, attributes=attributes, **options)


def _me(sso: Sso) -> str | None:
    answer = sso.client.get("/me")
    return answer.json["id"] if answer.status_code == 200 else None


def _events(sso: Sso, action: str) -> list[AuditEvent]:
    with sso.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == sso.org.org.id,
                                                             AuditEvent.action == action).order_by(AuditEvent.seq)))


def _identities(sso: Sso) -> set[tuple[str, str, str]]:
    with sso.db.reading() as session:
        return {(row.idp_entity_id, row.name_id_key, row.user_id) for row in session.scalars(select(SamlIdentity))}


def _users(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def test_first_sign_in_links_the_account_its_email_names(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "00uANN", "Ann@Acme.test").status_code == 303
    assert _me(sso) == ann.id
    assert _identities(sso) == {(IDP_ENTITY_ID, "00uann", ann.id)}
    linked = _events(sso, "sso.identity_linked")
    assert [(e.target_id, e.changes["name_id"], e.changes["idp_entity_id"]) for e in linked] == \
        [(ann.id, "00uANN", IDP_ENTITY_ID)]


def test_an_edited_email_never_chooses_another_account(sso: Sso, system: Actor) -> None:
    """The attack: B, linked as P2, sets their email attribute to A's and signs in again."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    bob = provision(sso.db, system, sso.org.org.id, "bob@acme.test")
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    assert _sign_in(sso, "P2-bob", "bob@acme.test").status_code == 303
    assert _me(sso) == bob.id

    assert _sign_in(sso, "P2-bob", "ann@acme.test").status_code == 303
    assert _me(sso) == bob.id  # the linked NameID chose, not the email
    # A's own NameID still lands on A, whatever email the IdP now sends for them.
    assert _sign_in(sso, "P1-ann", "ann.renamed@acme.test").status_code == 303
    assert _me(sso) == ann.id
    assert _identities(sso) == {(IDP_ENTITY_ID, "p1-ann", ann.id), (IDP_ENTITY_ID, "p2-bob", bob.id)}


def test_another_name_id_for_a_linked_account_is_refused_and_audited(sso: Sso, system: Actor) -> None:
    """The attack on a first sign-in: a new IdP user P3 claims A's email, A being linked as P1."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    sso.client.delete_cookie(cookies.COOKIE)
    before = _users(sso)

    answer = _sign_in(sso, "P3-mallory", "ANN@acme.test")
    assert answer.status_code == 403
    assert b"already linked" in answer.data
    assert _me(sso) != ann.id
    failed = _events(sso, "sso.login_failed")[-1]
    assert (failed.changes, failed.target_id, failed.outcome) == ({"reason": "name_id_mismatch"}, ann.id, "failure")
    assert _identities(sso) == {(IDP_ENTITY_ID, "p1-ann", ann.id)}  # nothing linked, nothing created
    assert _users(sso) == before


def test_jit_links_the_new_account_and_an_email_change_keeps_it(sso: Sso) -> None:
    assert _sign_in(sso, "P9-new", "nina@acme.test").status_code == 303
    nina = _me(sso)
    count = _users(sso)
    assert _identities(sso) == {(IDP_ENTITY_ID, "p9-new", nina)}
    assert _sign_in(sso, "P9-new", "nina.married@acme.test").status_code == 303
    assert _me(sso) == nina
    assert _users(sso) == count  # no second account for the new email


def test_a_linked_account_of_a_removed_member_is_not_signed_in_or_recreated(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, ann.id)
    count = _users(sso)
    assert _sign_in(sso, "P1-ann", "someone.else@acme.test").status_code == 403
    assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "user_removed"}
    assert _users(sso) == count


def test_a_linked_name_id_follows_the_member_who_took_the_removed_one_s_name(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, ann.id)
    again = provision(sso.db, system, sso.org.org.id, "ann@acme.test")  # the IdP provisions her anew
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    assert _me(sso) == again.id
    assert _identities(sso) == {(IDP_ENTITY_ID, "p1-ann", again.id)}
    assert _events(sso, "sso.identity_linked")[-1].changes["moved_from_removed_user"] is True


def test_a_removed_member_s_name_id_does_not_follow_an_edited_email(sso: Sso, system: Actor) -> None:
    """The NameID of a removed member is still linked: its email attribute cannot take it to another account."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    carl = provision(sso.db, system, sso.org.org.id, "carl@acme.test")  # never signed in: not linked
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, ann.id)
    sso.client.delete_cookie(cookies.COOKIE)
    assert _sign_in(sso, "P1-ann", "carl@acme.test").status_code == 403
    assert _me(sso) != carl.id
    assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "user_removed"}
    assert _identities(sso) == {(IDP_ENTITY_ID, "p1-ann", ann.id)}


def test_a_deactivated_linked_member_is_refused(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P1-ann", "ann@acme.test").status_code == 303
    with sso.db.transaction() as session:
        users.deactivate_user(session, system, sso.org.org.id, ann.id)
    assert _sign_in(sso, "P1-ann", "other@acme.test").status_code == 403
    assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "user_deactivated"}


def test_email_format_name_ids_still_match_by_their_key(sso: Sso, system: Actor) -> None:
    """Not persistent: the NameID is the userName, compared by its key (not lower()), and nothing is linked."""
    count = _users(sso)
    ann = provision(sso.db, system, sso.org.org.id, "Stra\u00dfe@acme.test")
    assert sso.sp_login(name_id="STRASSE@ACME.TEST").status_code == 303
    assert _me(sso) == ann.id
    assert _identities(sso) == set()
    assert _users(sso) == count + 1  # no JIT twin


def test_name_ids_with_format_or_bidi_characters_are_refused(sso: Sso, system: Actor) -> None:
    provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    for name_id in ("ann@acme.test\u200b", "\u202etset.emca@nna"):
        count = _users(sso)
        answer = sso.sp_login(name_id=name_id)
        assert answer.status_code == 400
        assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "invalid_value"}
        assert _users(sso) == count
    answer = _sign_in(sso, "P1-ann", "ann@acme.test\u202e")
    assert answer.status_code == 400
    assert _identities(sso) == set()


def test_a_linked_sign_in_sends_no_more_statements_than_an_email_one(sso: Sso, system: Actor,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The link, the named member and the removed-name probe come back in the one `SELECT users`."""
    monkeypatch.setattr(once, "PURGE_PROBABILITY", 0.0)
    monkeypatch.setattr(sessions, "PURGE_ONE_IN", 2**62)
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert sso.post(sso.response(name_id="P1-ann", name_id_format=PERSISTENT,
                                 attributes={"email": ["ann@acme.test"]})).status_code == 303  # links
    with statements(sso.db) as sent:  # her email changed at the IdP: the link still chooses her
        assert sso.post(sso.response(name_id="P1-ann", name_id_format=PERSISTENT,
                                     attributes={"email": ["ann.new@acme.test"]})).status_code == 303
    assert sent == RETURNING + audit_at_commit(sso.db)
    assert _me(sso) == ann.id


def test_only_the_first_sign_in_writes_the_link(sso: Sso, system: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(once, "PURGE_PROBABILITY", 0.0)
    monkeypatch.setattr(sessions, "PURGE_ONE_IN", 2**62)
    for name in ("two@acme.test", "three@acme.test"):
        provision(sso.db, system, sso.org.org.id, name)
    assert sso.post(sso.response(name_id="warm@acme.test")).status_code == 303
    with statements(sso.db) as sent:
        assert sso.post(sso.response(name_id="P9-new", name_id_format=PERSISTENT,
                                     attributes={"email": ["nina@acme.test"]})).status_code == 303
    assert sent == JIT_BEFORE + new_member_rows(sso.db) + ["INSERT saml_identities"] + JIT_AFTER + \
        audit_at_commit(sso.db)


NEW_ENTITY_ID = "https://idp.example.test/metadata/v2"


def _move_idp(sso: Sso) -> None:
    """The org uploads its IdP's metadata again, with a new entity id (same keys, same people)."""
    sso.idp = TestIdP(NEW_ENTITY_ID, sso.idp.keys)
    configure(sso.db, sso.org.org.slug, sso.idp)


def test_a_new_idp_entity_id_takes_the_links_with_it_audited(sso: Sso, system: Actor) -> None:
    """The links move in the metadata's transaction, one event naming both entity ids and the count;
    Ann still signs in by her NameID, whatever email it carries."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P-ann", "ann@acme.test").status_code == 303
    sso.client.delete_cookie(cookies.COOKIE)
    _move_idp(sso)
    assert {(e, u) for e, _k, u in _identities(sso)} == {(NEW_ENTITY_ID, ann.id)}
    [event] = _events(sso, "sso.identities_moved")
    assert event.changes == {"from_idp_entity_id": IDP_ENTITY_ID, "to_idp_entity_id": NEW_ENTITY_ID, "moved": 1,
                             "dropped": 0}
    assert _sign_in(sso, "P-ann", "someone@else.test").status_code == 303 and _me(sso) == ann.id
    assert len(_events(sso, "sso.identity_linked")) == 1


def test_after_a_new_idp_entity_id_an_email_nameid_does_not_sign_in_a_linked_member(sso: Sso, system: Actor) -> None:
    """The emailAddress path (saml.service._unlinked_user) still sees Ann's link at the new entity id."""
    provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P-ann", "ann@acme.test").status_code == 303
    sso.client.delete_cookie(cookies.COOKIE)
    _move_idp(sso)
    assert sso.sp_login(name_id="ann@acme.test").status_code == 403
    assert _events(sso, "sso.login_failed")[-1].changes["reason"] == "name_id_mismatch"


def test_links_left_at_a_new_entity_id_stand_and_the_clashing_old_ones_go(sso: Sso, system: Actor) -> None:
    """Links made at the new entity id before links moved with it (back and forth between two): the
    one at the new entity id stands, the old one of the same member is dropped, counted."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    bob = provision(sso.db, system, sso.org.org.id, "bob@acme.test")
    assert _sign_in(sso, "P-ann", "ann@acme.test").status_code == 303
    assert _sign_in(sso, "P-bob", "bob@acme.test").status_code == 303
    with sso.db.transaction() as session:  # Ann linked at the new entity id too, as before the fix
        row = session.scalars(select(SamlIdentity).where(SamlIdentity.user_id == ann.id)).one()
        session.add(SamlIdentity(org_id=row.org_id, idp_entity_id=NEW_ENTITY_ID, name_id_key=row.name_id_key,
                                 name_id=row.name_id, user_id=ann.id, created_at=row.created_at))
    _move_idp(sso)
    assert {(e, u) for e, _k, u in _identities(sso)} == {(NEW_ENTITY_ID, ann.id), (NEW_ENTITY_ID, bob.id)}
    assert _events(sso, "sso.identities_moved")[-1].changes["moved"] == 1
    assert _events(sso, "sso.identities_moved")[-1].changes["dropped"] == 1
