"""The IT admin's and auditor's console pages through the test client, on both databases: every form
refuses a post without its token, a viewer's post, and another org's ids, changing nothing; what
an owner and an admin may do goes through the domain and is audited; errors stand next to their field.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import mappings, orgs, scim_credentials
from identity.db import Database
from identity.models import GroupMapping, Org, ScimClient, ScimToken
from identity.orgs import NewOrg
from tests.factories import actions, provision
from tests.identity.test_api_sessions import ORIGIN, Browser, sign_in


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def owned(db: Database, acme: NewOrg, system: Actor) -> dict[str, str]:
    """A SCIM token, an OAuth client and a group mapping of `acme`, by kind."""
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id, name="Okta")
        client = scim_credentials.create_scim_client(session, system, acme.org.id, name="Entra")
        rule = mappings.create_mapping(session, system, acme.org.id, group_display_name="Engineers",
                                       team_id=acme.default_team_id)
    return {"token": token.id, "client": client.id, "mapping": rule.id}


def _posts(ids: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every form of the pages, with a change it would make."""
    return [
        ("/console/idp/require-sso", {"require_sso": "on"}),
        ("/console/idp/scim-tokens", {"name": "forged"}),
        (f"/console/idp/scim-tokens/{ids['token']}/revoke", {}),
        ("/console/idp/scim-clients", {"name": "forged"}),
        (f"/console/idp/scim-clients/{ids['client']}/revoke", {}),
        ("/console/idp/mappings", {"group_display_name": "Forged", "org_role": "admin"}),
        (f"/console/idp/mappings/{ids['mapping']}", {"group_display_name": "Engineers", "org_role": "admin"}),
        (f"/console/idp/mappings/{ids['mapping']}/delete", {}),
        ("/console/idp/sso", {"jit": "on"}),
        ("/console/idp/group-sync", {"group_sync": "mapped", "idp_may_grant_owner": "on"}),
        ("/console/billing/plan", {"included_seats": "999", "seat_price": "0", "max_seats": ""}),
        ("/console/audit/verify", {}),
        ("/console/audit/checkpoint", {}),
    ]


def _state(db: Database) -> dict[str, Any]:
    """What any of those forms would change."""
    with db.reading() as session:
        counted = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                   for model in (AuditEvent, ScimToken, ScimClient, GroupMapping)}
        revoked = session.scalar(select(func.count()).select_from(ScimToken).where(ScimToken.revoked_at.isnot(None)))
        clients = session.scalar(select(func.count()).select_from(ScimClient).where(ScimClient.revoked_at.isnot(None)))
        rules = sorted((r.group_display_name, r.org_role) for r in session.scalars(select(GroupMapping)))
        plan = [(o.included_seats, o.seat_price_cents, o.require_sso, o.group_sync, o.idp_may_grant_owner)
                for o in session.scalars(select(Org))]
    return {**counted, "revoked": (revoked, clients), "rules": rules, "plans": plan}


def _post(client: FlaskClient, browser: Browser, path: str, form: dict[str, str], *, token: bool = True) -> Any:
    data = {**form, **({"csrf_token": browser.csrf} if token else {})}
    return client.post(path, data=data, headers={"Cookie": browser.cookie, "Origin": ORIGIN,
                                                 "Sec-Fetch-Site": "same-origin"})


def _followed(client: FlaskClient, browser: Browser, answer: Any) -> Any:
    """The page a 303 leads to, with the notice cookie it set (as a browser would send it)."""
    notice = answer.headers["Set-Cookie"].split(";", 1)[0]
    return client.get(answer.headers["Location"], headers={"Cookie": f"{browser.cookie}; {notice}"})


def test_a_form_without_its_token_changes_nothing(client: FlaskClient, db: Database, acme: NewOrg,
                                                  owned: dict[str, str]) -> None:
    owner = sign_in(db, acme.owner.id)
    before = _state(db)
    for path, form in _posts(owned):
        answer = _post(client, owner, path, form, token=False)
        assert answer.status_code == 403 and b"did not come from this console" in answer.data, path
    assert _state(db) == before


def test_a_viewers_post_changes_nothing_even_with_her_own_token(client: FlaskClient, db: Database, acme: NewOrg,
                                                                owned: dict[str, str], system: Actor) -> None:
    viewer = sign_in(db, provision(db, system, acme.org.id, "vera@acme.test", role="viewer").id)
    before = _state(db)
    for path, form in _posts(owned):
        answer = _post(client, viewer, path, form)
        assert answer.status_code == 403, path
        assert b"new-secret" not in answer.data and b"<form" not in answer.data.split(b"<main")[1], path
    assert _state(db) == before


def test_another_orgs_ids_are_not_found(client: FlaskClient, db: Database, acme: NewOrg, owned: dict[str, str],
                                        system: Actor) -> None:
    with db.transaction() as session:
        other = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    intruder = sign_in(db, other.owner.id)
    before = _state(db)
    for path, form in _posts(owned):
        if any(ref in path for ref in owned.values()):
            answer = _post(client, intruder, path, form)
            assert answer.status_code == 404 and b"no " in answer.data.lower(), path
    assert _state(db) == before


def test_an_admin_reads_trust_and_revokes_but_may_not_create_credentials_or_edit_the_plan(
        client: FlaskClient, db: Database, acme: NewOrg, owned: dict[str, str], system: Actor) -> None:
    admin = sign_in(db, provision(db, system, acme.org.id, "ada@acme.test", role="admin").id)
    page = client.get("/console/idp", headers={"Cookie": admin.cookie})
    assert page.status_code == 200 and b"Create SCIM token" not in page.data and b"Save single sign-on" not in page.data
    refused = _post(client, admin, "/console/idp/scim-tokens", {"name": "mine"})
    assert refused.status_code == 403 and b"trust.manage" in refused.data and b"new-secret" not in refused.data
    assert _post(client, admin, f"/console/idp/scim-tokens/{owned['token']}/revoke", {}).status_code == 303
    assert actions(db, acme.org.id)[-1] == "scim_token.revoked"
    billing = client.get("/console/billing", headers={"Cookie": admin.cookie})
    assert billing.status_code == 200 and b"Save seat plan" not in billing.data
    plan = _post(client, admin, "/console/billing/plan", {"included_seats": "9", "seat_price": "1", "max_seats": ""})
    assert plan.status_code == 403 and b"billing.manage" in plan.data


def test_the_owner_makes_a_token_shown_once_and_a_client(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    owner = sign_in(db, acme.owner.id)
    made = _post(client, owner, "/console/idp/scim-tokens", {"name": "Okta"})
    (secret,) = re.findall(rb'id="new-secret">(scim_[^<]+)<', made.data)
    assert made.status_code == 200 and secret not in client.get("/console/idp", headers={"Cookie": owner.cookie}).data
    made = _post(client, owner, "/console/idp/scim-clients", {"name": "Entra"})
    assert re.search(rb'id="new-secret">scimcs_', made.data) and b"/oauth/token" in made.data
    assert actions(db, acme.org.id)[-2:] == ["scim_token.created", "scim_client.created"]


def test_group_mappings_are_created_edited_and_deleted(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    owner = sign_in(db, acme.owner.id)
    made = _post(client, owner, "/console/idp/mappings", {"group_external_id": "00g1", "team_id": acme.default_team_id,
                                                           "team_role": "admin"})
    assert made.status_code == 303
    with db.reading() as session:
        (rule,) = session.scalars(select(GroupMapping))
    assert (rule.group_external_id, rule.team_role) == ("00g1", "admin")
    edited = _post(client, owner, f"/console/idp/mappings/{rule.id}",
                   {"group_external_id": "00g1", "team_id": "", "org_role": "viewer"})
    assert edited.status_code == 303
    assert _post(client, owner, f"/console/idp/mappings/{rule.id}/delete", {}).status_code == 303
    assert actions(db, acme.org.id)[-3:] == ["group_mapping.created", "group_mapping.updated", "group_mapping.deleted"]


def test_group_sync_is_an_admins_and_owner_grants_the_owners(client: FlaskClient, db: Database, acme: NewOrg,
                                                               system: Actor) -> None:
    admin = sign_in(db, provision(db, system, acme.org.id, "ada@acme.test", role="admin").id)
    form = {"group_sync": "mapped", "idp_may_grant_owner": "on"}
    assert _post(client, admin, "/console/idp/group-sync", form).status_code == 303
    with db.reading() as session:
        org = session.get_one(Org, acme.org.id)
        assert (org.group_sync, org.idp_may_grant_owner) == ("mapped", False)  # not offered to an admin, not sent
    assert _post(client, sign_in(db, acme.owner.id), "/console/idp/group-sync", form).status_code == 303
    with db.reading() as session:
        assert session.get_one(Org, acme.org.id).idp_may_grant_owner is True
    assert actions(db, acme.org.id)[-2:] == ["org.settings_changed", "org.settings_changed"]


def test_an_owner_rule_is_listed_with_what_it_grants_now(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """While the IdP may not grant owner, an owner rule gives admin (group_membership.grants_of): the
    list says so, and says owner again once the owner turns that on."""
    owner = sign_in(db, acme.owner.id)
    made = _post(client, owner, "/console/idp/mappings", {"group_external_id": "00g-own", "org_role": "owner"})
    assert made.status_code == 303

    def listed() -> str:
        page = client.get("/console/idp", headers={"Cookie": owner.cookie}).data.decode()
        (row,) = re.findall(r'<tr>\s*<td data-label="IdP group">[^<]*<span class="mono muted">00g-own</span>.*?</tr>',
                            page, re.S)
        (cell,) = re.findall(r'<td data-label="Org role">(.*?)</td>', row, re.S)
        return re.sub(r"<[^>]+>", "", cell)

    assert listed().startswith("admin (the rule names owner")
    assert _post(client, owner, "/console/idp/group-sync", {"group_sync": "mirror",
                                                             "idp_may_grant_owner": "on"}).status_code == 303
    assert listed() == "owner"


@pytest.mark.parametrize(("path", "form", "field"), [
    ("/console/idp/mappings", {"team_id": ""}, "mapping-new-group-error"),
    ("/console/idp/sso", {"idp_metadata_url": "http://insecure.example/metadata"}, "sso-idp_metadata_url-error"),
    ("/console/billing/plan", {"included_seats": "3", "seat_price": "ten", "max_seats": ""}, "seat_price-error"),
    ("/console/billing/plan", {"included_seats": "-1", "seat_price": "10", "max_seats": ""}, "included_seats-error"),
])
def test_errors_stand_next_to_their_field(client: FlaskClient, db: Database, acme: NewOrg, path: str,
                                          form: dict[str, str], field: str) -> None:
    owner = sign_in(db, acme.owner.id)
    before = _state(db)
    answer = _post(client, owner, path, form)
    assert answer.status_code == 400 and f'id="{field}"'.encode() in answer.data
    assert f'aria-describedby="{field}"'.encode() in answer.data
    assert _state(db) == before


@pytest.mark.parametrize(("path", "model"), [("/console/idp/scim-tokens", ScimToken),
                                             ("/console/idp/scim-clients", ScimClient)])
def test_the_same_create_form_sent_twice_makes_one_credential(client: FlaskClient, db: Database, acme: NewOrg,
                                                               path: str, model: Any) -> None:
    """A reload of the page that shows the secret sends its form again, with the form's one-time nonce:
    no second credential; back to the list (303) with a notice that it was made and its secret cannot
    be shown again, no secret in that page or its address."""
    owner = sign_in(db, acme.owner.id)
    page = client.get("/console/idp", headers={"Cookie": owner.cookie}).data
    (nonce,) = set(re.findall(rb'name="nonce" value="([^"]+)"', page))
    form = {"name": "Twice", "nonce": nonce.decode()}
    first = _post(client, owner, path, form)
    assert first.status_code == 200
    secret = re.search(rb'id="new-secret"[^>]*>([^<]+)<', first.data)
    again = _post(client, owner, path, form)
    assert again.status_code == 303 and again.headers["Location"] == "/console/idp#scim"
    shown = _followed(client, owner, again)
    assert b"was already created; its secret was shown once and cannot be shown again" in shown.data
    assert b'id="new-secret"' not in shown.data and secret and secret.group(1).strip() not in shown.data
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(model).where(model.name == "Twice")) == 1
    assert _post(client, owner, path, {"name": "Twice", "nonce": "not-a-uuid"}).status_code == 400


def test_an_empty_metadata_file_is_refused(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """An empty file (a failed download) is a file given, not "keep the IdP in force": refused next to it."""
    from io import BytesIO

    owner = sign_in(db, acme.owner.id)
    answer = client.post("/console/idp/sso", content_type="multipart/form-data", headers={
        "Cookie": owner.cookie, "Origin": ORIGIN}, data={
        "csrf_token": owner.csrf, "jit": "on", "idp_metadata": (BytesIO(b""), "metadata.xml")})
    assert answer.status_code == 400 and b'id="sso-idp_metadata-error"' in answer.data
    assert b"is empty" in answer.data and "sso.configured" not in actions(db, acme.org.id)


def test_the_sso_form_takes_an_uploaded_metadata_file(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    from io import BytesIO

    from tests.saml.idp import KeyPair, TestIdP

    idp = TestIdP("https://okta.example.test/exk1", KeyPair.make("okta"))
    owner = sign_in(db, acme.owner.id)
    answer = client.post("/console/idp/sso", content_type="multipart/form-data", headers={
        "Cookie": owner.cookie, "Origin": ORIGIN}, data={
        "csrf_token": owner.csrf, "jit": "on", "attr_groups": "memberOf, groups",
        "idp_metadata": (BytesIO(idp.metadata()), "metadata.xml")})
    assert answer.status_code == 303, answer.data
    page = client.get("/console/idp", headers={"Cookie": owner.cookie})
    assert b"https://okta.example.test/exk1" in page.data and b'value="memberOf, groups"' in page.data
    assert actions(db, acme.org.id)[-1] == "sso.configured"


def test_the_sso_form_sets_the_signing_and_encryption_options(client: FlaskClient, db: Database, system: Actor,
                                                              acme: NewOrg) -> None:
    """The three options the API offers (sign_authn_requests, want_assertions_encrypted,
    want_assertions_signed): on when ticked, off when not, shown as they stand, and audited."""
    from io import BytesIO

    from saml.models import SamlConnection
    from tests.saml.idp import KeyPair, TestIdP

    options = ("sign_authn_requests", "want_assertions_encrypted", "want_assertions_signed")
    idp = TestIdP("https://okta.example.test/exk2", KeyPair.make("okta"))
    owner = sign_in(db, acme.owner.id)

    def save(ticked: dict[str, str], **files: object) -> None:
        answer = client.post("/console/idp/sso", content_type="multipart/form-data", headers={
            "Cookie": owner.cookie, "Origin": ORIGIN}, data={"csrf_token": owner.csrf, "jit": "on", **ticked, **files})
        assert answer.status_code == 303, answer.data

    def stored() -> dict[str, bool]:
        with db.reading() as session:
            connection = session.get(SamlConnection, acme.org.id)
            assert connection is not None
            return {option: getattr(connection, option) for option in options}

    save({option: "on" for option in options}, idp_metadata=(BytesIO(idp.metadata()), "metadata.xml"))
    assert stored() == dict.fromkeys(options, True)
    page = client.get("/console/idp", headers={"Cookie": owner.cookie}).data
    for option in options:
        assert f'id="{option}" name="{option}" checked'.encode() in page
    admin = sign_in(db, provision(db, system, acme.org.id, "ada@acme.test", role="admin").id)
    shown = client.get("/console/idp", headers={"Cookie": admin.cookie}).data  # an admin reads, never changes
    assert b"signed requests: on; encrypted assertions: asked;" in shown and b"signed assertions: required" in shown
    assert b'id="want_assertions_signed"' not in shown
    save({"want_assertions_signed": "on"})  # the options alone, the metadata in force kept
    assert stored() == {"sign_authn_requests": False, "want_assertions_encrypted": False,
                        "want_assertions_signed": True}
    assert actions(db, acme.org.id)[-1] == "sso.updated"
    metadata = client.get(f"/saml/{acme.org.slug}/metadata").data
    assert b'WantAssertionsSigned="true"' in metadata and b'AuthnRequestsSigned="false"' in metadata


def test_the_audit_page_reads_the_filtered_selection_and_links_its_exact_export(
        client: FlaskClient, db: Database, acme: NewOrg) -> None:
    owner = sign_in(db, acme.owner.id)
    page = client.get("/console/audit?action=user.created&since=2020-01-01T00:00",
                      headers={"Cookie": owner.cookie})
    assert page.status_code == 200 and b"owner@acme.test" in page.data and b"team.created" not in page.data
    assert b"/audit-events/export?format=csv&amp;since=2020-01-01T00%3A00&amp;action=user.created" in page.data
    assert actions(db, acme.org.id)[-1] == "audit.read"
    bad = client.get("/console/audit?since=yesterday", headers={"Cookie": owner.cookie})
    assert bad.status_code == 400 and b'id="since-error"' in bad.data


def test_an_unreadable_until_is_shown_next_to_until(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """selection_of named "since/until" for either, and the page put it under "From": a bad `until`
    marked the `since` field, whose value was fine. Each field now has its own error."""
    owner = sign_in(db, acme.owner.id)
    bad = client.get("/console/audit", query_string={"since": "2026-01-01T00:00", "until": "next tuesday"},
                     headers={"Cookie": owner.cookie})
    assert bad.status_code == 400 and b'id="until-error"' in bad.data and b'id="since-error"' not in bad.data


def test_a_group_mapping_takes_its_team_typed_by_name(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """The rule's team is typed by name or id (no list of every team of the org in the form): a name
    resolves to its team, an unknown one is refused next to the team field, what was typed kept."""
    owner = sign_in(db, acme.owner.id)
    made = _post(client, owner, "/console/idp/mappings", {"group_external_id": "00g1", "team_id": "default"})
    assert made.status_code == 303
    typo = _post(client, owner, "/console/idp/mappings", {"group_external_id": "00g2", "team_id": "Defualt"})
    assert typo.status_code == 404 and b'id="mapping-new-team_id-error"' in typo.data and b'value="Defualt"' in typo.data
    with db.reading() as session:
        assert [r.team_id for r in session.scalars(select(GroupMapping))] == [acme.default_team_id]
    assert b'<select id="mapping-new-team_id"' not in client.get("/console/idp", headers={"Cookie": owner.cookie}).data


@pytest.mark.parametrize(("path", "fields"), [("/console/keys", {"scopes": "inference"}),
                                              ("/console/keys/service", {"scopes": "inference"})])
def test_a_key_form_sent_twice_makes_one_key(client: FlaskClient, db: Database, acme: NewOrg, path: str,
                                             fields: dict[str, str]) -> None:
    """The keys page as the IdP page: a reload of the page that shows a new key's secret sends the form
    again with its one-time nonce: no second key, back to the list (303) at that key, with a notice and
    no secret; each create form has a nonce of its own (both make API keys)."""
    from identity.models import ApiKey

    owner = sign_in(db, acme.owner.id)
    page = client.get("/console/keys", headers={"Cookie": owner.cookie}).data
    nonces = re.findall(rb'name="nonce" value="([^"]+)"', page)
    assert len(nonces) == len(set(nonces)) == 2
    nonce = nonces[0 if path == "/console/keys" else 1].decode()
    form = {"name": "Twice", "team_id": acme.default_team_id, "nonce": nonce, **fields}
    first = _post(client, owner, path, form)
    assert first.status_code == 200 and b'id="new-secret"' in first.data
    secret = re.search(rb'id="new-secret"[^>]*>([^<]+)<', first.data)
    again = _post(client, owner, path, form)
    assert again.status_code == 303 and again.headers["Location"] == f"/console/keys#key-{nonce}"
    shown = _followed(client, owner, again)
    assert b"was already created; its secret was shown once and cannot be shown again" in shown.data
    assert f'id="key-{nonce}"'.encode() in shown.data  # the key the first sending made, listed
    assert b'id="new-secret"' not in shown.data and secret and secret.group(1).strip() not in shown.data
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == "Twice")) == 1
    assert _post(client, owner, path, {**form, "nonce": "not-a-uuid"}).status_code == 400
    assert _post(client, owner, path, {**form, "nonce": ""}).status_code == 200  # the admin API's way: no nonce


def test_a_nonce_naming_another_orgs_credential_tells_nothing_of_it(client: FlaskClient, db: Database, acme: NewOrg,
                                                                    system: Actor) -> None:
    """A nonce typed by hand as the id of another org's key or SCIM token: no 409 that would say such a row
    exists; the credential is made under a fresh id and the other org's row is untouched."""
    from identity import keys
    from identity.models import ApiKey

    with db.transaction() as session:
        other = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        theirs = keys.create_service_key(session, system, other.org.id, team_id=other.default_team_id,
                                         name="theirs", scopes=["inference"]).id
        token = scim_credentials.create_scim_token(session, system, other.org.id, name="theirs").id
    owner = sign_in(db, acme.owner.id)
    for path, form, model, probed in (
            ("/console/keys/service", {"name": "mine", "team_id": acme.default_team_id, "scopes": "inference"},
             ApiKey, theirs),
            ("/console/idp/scim-tokens", {"name": "mine"}, ScimToken, token)):
        made = _post(client, owner, path, {**form, "nonce": probed})
        assert made.status_code == 200 and b'id="new-secret"' in made.data, path
        with db.transaction() as session:
            mine = session.scalars(select(model).where(model.org_id == acme.org.id, model.name == "mine")).one()
            assert mine.id != probed and session.get_one(model, probed).org_id == other.org.id
