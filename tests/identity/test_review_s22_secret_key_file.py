"""Review s22 (second, hostile): a test that failed (xfail strict; fixed, mark gone): the generated SECRET_KEY's file was
trusted whatever it was. make_private_dir leaves an existing data folder as it is ("it may be shared
(/tmp)": its files' own modes keep them private), but a file another user planted there first, or a
symlink to one, is read as the key: whoever planted it knows the key and forges SCIM access tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from identity import config


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


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_key_file_others_may_read_is_refused_naming_it(mode: int, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secret_key").write_text("k" * 64)
    (tmp_path / "secret_key").chmod(mode)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="secret_key"):
        config.secret_key()


def test_a_planted_fifo_is_refused_without_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "secret_key", 0o600)
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValueError, match="secret_key"):
        config.secret_key()


def test_the_key_the_service_made_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert config.secret_key() == config.secret_key()


def test_db_upgrade_refuses_a_planted_key_file_before_it_migrates(tmp_path: Path) -> None:
    """`identity db upgrade` reads the key first: a key file others may read stops it with one error line,
    before a migration (0013c seals SP keys under the key file it finds) could use it. A fresh SQLite URL
    shows it: the database file is never made."""
    from click.testing import CliRunner

    from identity.web.cli import main

    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    (data / "secret_key").write_text("k" * 64)
    (data / "secret_key").chmod(0o644)
    database = tmp_path / "fresh.db"
    result = CliRunner(env={"DATABASE_URL": f"sqlite:///{database}", "IDENTITY_DATA_DIR": str(data),
                            "SECRET_KEY": None}).invoke(main, ["db", "upgrade"])
    assert result.exit_code != 0 and "secret_key" in result.output
    assert not database.exists()
