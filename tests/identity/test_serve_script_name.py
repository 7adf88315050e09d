"""A client on 127.0.0.1 (gunicorn's default `forwarded_allow_ips`) may send a `SCRIPT_NAME` request
header, which gunicorn takes as the WSGI SCRIPT_NAME (its `forwarder_headers`) and takes off the path.
BASE_URL alone says where the service lives (identity.web.base_path): such a header changes nothing
the service answers, under a path or at the root. `script-name` (a dash) is an ordinary header."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.identity.test_serve import BIN, ROOT, _free_port, _stop, _wait_healthy

SECRET_KEY = "k" * 48
SPOOFED = [{"SCRIPT_NAME": "/x"}, {"script-name": "/x"}]


def _served(tmp_path: Path, prefix: str) -> Iterator[int]:
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {**os.environ, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": SECRET_KEY,
           "PYTHONPATH": str(ROOT), "BASE_URL": origin + prefix}
    env.pop("DATABASE_URL", None)
    env.pop("SCRIPT_NAME", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_healthy(origin + prefix, proc)
        yield port
    finally:
        _stop(proc)


@pytest.fixture
def under_a_path(tmp_path: Path) -> Iterator[int]:
    yield from _served(tmp_path, "/identity")


@pytest.fixture
def at_the_root(tmp_path: Path) -> Iterator[int]:
    yield from _served(tmp_path, "")


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The status, Location and the page's own paths (links, forms, scripts) of a GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        links = " ".join(sorted(set(re.findall(r'\s(?:href|action|src)="(/[^"]*)"', body))))
        return response.status, response.getheader("Location") or "", links
    finally:
        conn.close()


@pytest.mark.parametrize("spoofed", SPOOFED, ids=["SCRIPT_NAME", "script-name"])
def test_a_script_name_header_changes_nothing_under_a_path(under_a_path: int, spoofed: dict[str, str]) -> None:
    """Served under /identity: /x/identity/ is outside the service (404) with the header as without it;
    the service's own pages, redirects and health answer as without it."""
    port = under_a_path
    for path in ("/x/identity/", "/x/identity/healthz", "/identity/", "/identity", "/identity/console",
                 "/identity/healthz"):
        assert _get(port, path, spoofed) == _get(port, path), path
    assert _get(port, "/x/identity/", spoofed)[0] == 404


@pytest.mark.parametrize("spoofed", SPOOFED, ids=["SCRIPT_NAME", "script-name"])
def test_a_script_name_header_changes_nothing_at_the_root(at_the_root: int, spoofed: dict[str, str]) -> None:
    """Served at the root: /x/ is no page of the service (404), and its pages' links and redirects
    never gain the header's /x."""
    port = at_the_root
    for path in ("/x/", "/x/console", "/x/healthz", "/", "/console", "/healthz"):
        assert _get(port, path, spoofed) == _get(port, path), path
    status, location, links = _get(port, "/x/console", spoofed)
    assert status == 404 and "/x/" not in location + links
