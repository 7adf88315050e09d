"""Review s22 (second, hostile): failing test, xfail strict: the generated SECRET_KEY's file is
trusted whatever it is. make_private_dir leaves an existing data folder as it is ("it may be shared
(/tmp)": its files' own modes keep them private), but a file another user planted there first, or a
symlink to one, is read as the key: whoever planted it knows the key and forges SCIM access tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from identity import config


@pytest.mark.xfail(strict=True, reason="review s22: var/secret_key planted as a symlink (or any file the service "
                   "did not make 0600) in a shared data folder is read as SECRET_KEY")
def test_a_planted_secret_key_symlink_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp is
    planted = tmp_path / "mallory-key"
    planted.write_text("k" * 64)  # a key Mallory knows
    planted.chmod(0o644)
    (shared / "secret_key").symlink_to(planted)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(shared))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    try:
        key = config.secret_key()
    except ValueError:
        return  # refused: the service does not start on a key someone else chose
    assert key != "k" * 64, "the planted key became SECRET_KEY"
    assert os.stat(shared / "secret_key", follow_symlinks=False).st_mode & 0o077 == 0
