"""The replay cache and pending requests hold across processes: separate engines racing on one database."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from identity.db import Database
from identity.web.app import create_app
from tests.saml.conftest import Sso
from tests.saml.idp import post_form

RACERS = 6


def _apps(db_url: str) -> list:
    # One Database (engine and pool) per app: what separate worker processes would each hold.
    apps = []
    for _ in range(RACERS):
        database = Database(db_url)
        apps.append((database, create_app({"DATABASE": database, "DATABASE_URL": db_url, "SECRET_KEY": "test-secret-key-32-characters-min",
                                           "BASE_URL": "http://localhost", "TESTING": True})))
    return apps


def _race(sso: Sso, form: dict) -> list[int]:
    apps = _apps(sso.db.url)
    barrier = threading.Barrier(RACERS)

    def post(app) -> int:
        client = app[1].test_client()
        barrier.wait()
        return client.post("/saml/acme/acs", data=form).status_code

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            return sorted(pool.map(post, apps))
    finally:
        for database, _app in apps:
            database.dispose()


def test_one_assertion_signs_in_once_however_many_workers_race(sso: Sso) -> None:
    statuses = _race(sso, post_form(sso.response(name_id="racer@acme.test")))
    assert statuses.count(303) == 1 and all(s in (400, 403) for s in statuses if s != 303), statuses


def test_one_request_id_is_answered_once_however_many_workers_race(sso: Sso) -> None:
    request_id = sso.start_login()
    # Distinct assertions (distinct ids) all answering the same AuthnRequest.
    forms = [post_form(sso.response(name_id="racer@acme.test", in_response_to=request_id)) for _ in range(RACERS)]
    apps = _apps(sso.db.url)
    barrier = threading.Barrier(RACERS)

    def post(pair) -> int:
        (_database, app), form = pair
        client = app.test_client()
        sso.share_browser(client)  # the racers deliver responses to the browser that started the login
        barrier.wait()
        return client.post("/saml/acme/acs", data=form).status_code

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            statuses = sorted(pool.map(post, zip(apps, forms, strict=True)))
    finally:
        for database, _app in apps:
            database.dispose()
    assert statuses.count(303) == 1, statuses
