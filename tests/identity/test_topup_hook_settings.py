"""The auto top-up's payment hook settings (README, team wallets: requests are "POSTed to
`TOPUP_WEBHOOK_URL`, signed with `TOPUP_WEBHOOK_SECRET`"), checked at start as every setting is.

A hook URL without a secret is signed under the empty key: anybody can compute that signature, so
the operator's payment system cannot tell the service's requests ("charge team X's card") from
forged ones. Such a configuration must stop the service at start and the cron job, naming the
setting, and no request may leave signed that way.

From a hostile operator's review: the docstring says what the service did.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from identity import config
from identity.web.cli import main
from tests.identity.test_operator_commands import pending_topup  # noqa: F401 (a fixture)


@pytest.fixture
def hook() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """A payment hook on 127.0.0.1 that answers 200 and keeps each request's body and signature."""
    received: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((body, self.headers.get("X-Identity-Signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_hook_url_without_its_secret_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """config.from_environment (what `identity serve` and every worker read at start) took
    TOPUP_WEBHOOK_URL alone without a word."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOPUP_WEBHOOK_URL", "https://pay.example/hook")
    monkeypatch.delenv("TOPUP_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValueError, match="TOPUP_WEBHOOK_SECRET"):
        config.from_environment()


def test_no_top_up_request_leaves_signed_under_the_empty_key(
        cli_env: dict[str, str], pending_topup: str, hook: tuple[str, list[tuple[bytes, str]]]) -> None:  # noqa: F811
    """`identity billing topups deliver` with TOPUP_WEBHOOK_URL and no TOPUP_WEBHOOK_SECRET posted
    the pending request to the hook signed with HMAC-SHA256 under "" (which anybody can forge) and
    exited 0."""
    url, received = hook
    result = CliRunner(env={**cli_env, "TOPUP_WEBHOOK_URL": url, "TOPUP_WEBHOOK_SECRET": ""}).invoke(
        main, ["billing", "topups", "deliver"])
    forgeable = []
    for body, signed in received:
        stamp = signed.split(",", 1)[0].removeprefix("t=")
        anyone = hmac.new(b"", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        forgeable.append(signed.endswith(f"v1={anyone}"))
    assert not any(forgeable), "a top-up request reached the payment hook signed under the empty key"
    assert result.exit_code == 1 and "TOPUP_WEBHOOK_SECRET" in result.output, result.output
