"""Review s22 (second, hostile): a test that failed (xfail strict; fixed, mark gone): settings still accepted at start that
failed later (95b890d: "every one the README lists is read at start")."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity import config


@pytest.mark.parametrize("url", ["https://pay.example:99999/hook", "https://pay.example:0/hook",
                                 "https://pay.example:port/hook"])
def test_a_hook_url_with_an_impossible_port_stops_the_service_at_start(
        url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOPUP_WEBHOOK_URL", url)
    monkeypatch.setenv("TOPUP_WEBHOOK_SECRET", "s3cret")
    with pytest.raises(ValueError, match="TOPUP_WEBHOOK_URL"):
        config.from_environment()
