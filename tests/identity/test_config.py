"""Configuration from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity import config


def test_saml_maximum_issue_age_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SAML_MAX_ISSUE_AGE_SECONDS", raising=False)
    assert "SAML_MAX_ISSUE_AGE_SECONDS" not in config.from_environment()  # saml.protocol's default applies
    monkeypatch.setenv("SAML_MAX_ISSUE_AGE_SECONDS", "120")
    assert config.from_environment()["SAML_MAX_ISSUE_AGE_SECONDS"] == 120
