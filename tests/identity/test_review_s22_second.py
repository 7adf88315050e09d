"""Review s22 (second, hostile): tests that failed (xfail strict, since fixed, marks gone) on this session's changes: the health
check's one-thread rule, and the service under BASE_URL's path. Real app, real databases."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask

from identity.db import Database
from identity.web.app import create_app

PREFIX = "/identity"
KEY = "test-secret-key-32-characters-min"


def _app(db: Database, base_url: str) -> Flask:
    return create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": KEY, "BASE_URL": base_url,
                       "TESTING": True})


@pytest.mark.postgres_only("the health check runs on a thread of its own on PostgreSQL only")
def test_two_health_checks_at_once_are_both_healthy(db_url: str) -> None:
    db = Database(db_url, pool_size=1, max_overflow=0)  # one connection: the checks wait for it a moment
    try:
        client = _app(db, "http://localhost").test_client()
        statuses: list[int] = []
        held = db.engine.connect()  # a request's read in progress, ended 0.5 s later
        held.exec_driver_sql("SELECT 1")
        probes = [threading.Thread(target=lambda: statuses.append(client.get("/healthz").status_code))
                  for _ in range(2)]
        for probe in probes:
            probe.start()
            time.sleep(0.1)
        time.sleep(0.3)
        held.close()
        for probe in probes:
            probe.join(10)
        assert sorted(statuses) == [200, 200]  # each within HEALTH_CHECK_DEADLINE_SECONDS (3 s) of its start
    finally:
        db.dispose()


def test_the_answer_outside_the_base_path_is_strict_transport_too(db: Database) -> None:
    client = _app(db, f"https://id.example.test{PREFIX}").test_client()
    inside = client.get(f"{PREFIX}/healthz")
    assert "Strict-Transport-Security" in inside.headers
    outside = client.get("/")
    assert outside.status_code == 404
    assert "Strict-Transport-Security" in outside.headers


def test_base_url_without_its_slash_is_redirected_under_base_url(db: Database) -> None:
    client = _app(db, f"https://id.example.test{PREFIX}").test_client()
    answer = client.get(PREFIX, headers={"Host": "evil.example"})  # the app behind a TLS proxy: plain http
    assert answer.status_code in (301, 302, 303, 307, 308)
    assert answer.headers["Location"] in (f"{PREFIX}/", f"https://id.example.test{PREFIX}/")


def test_the_api_description_under_the_base_path_names_its_server(db: Database) -> None:
    client = _app(db, f"https://id.example.test{PREFIX}").test_client()
    description = client.get(f"{PREFIX}/openapi.json").get_json()
    servers = [server["url"] for server in description.get("servers", [])]
    assert any(url.rstrip("/") in (PREFIX, f"https://id.example.test{PREFIX}") for url in servers), servers
