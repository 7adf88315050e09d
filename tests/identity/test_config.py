"""Configuration from the environment."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from identity import config
from identity.web.cli import main


def test_saml_maximum_issue_age_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SAML_MAX_ISSUE_AGE_SECONDS", raising=False)
    assert "SAML_MAX_ISSUE_AGE_SECONDS" not in config.from_environment()  # saml.protocol's default applies
    monkeypatch.setenv("SAML_MAX_ISSUE_AGE_SECONDS", "120")
    assert config.from_environment()["SAML_MAX_ISSUE_AGE_SECONDS"] == 120


@pytest.mark.parametrize("url", ["smtp://mail.internal:twentyfive", "smtp://mail.internal:70000",
                                 "http://mail.internal", "smtp://user:s3cret@:25"])
def test_a_malformed_smtp_url_stops_the_service_at_start_naming_the_setting_not_its_password(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMTP_URL", url)
    with pytest.raises(ValueError, match="SMTP_URL") as refused:
        config.from_environment()
    assert "s3cret" not in str(refused.value)


def test_a_well_formed_smtp_url_is_read_with_its_scheme_s_default_port(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SMTP_URL", "smtps://no%40reply:p%3Ass@mail.internal")
    assert config.from_environment()["SMTP_URL"] == "smtps://no%40reply:p%3Ass@mail.internal"
    server = config.smtp_server("smtps://no%40reply:p%3Ass@mail.internal")
    assert (server.host, server.port, server.user, server.password) == ("mail.internal", 465, "no@reply", "p:ss")


@pytest.mark.parametrize(("raw", "read"), [("HTTPS://Identity.Example.COM/", "https://identity.example.com"),
                                           ("http://127.0.0.1:8000/base/", "http://127.0.0.1:8000/base")])
def test_base_url_is_read_in_one_spelling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, read: str) -> None:
    """Scheme and host compare case-insensitively: `HTTPS://` is https (Secure cookies), and a
    browser's lowercase Origin is BASE_URL's origin."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", raw)
    assert config.from_environment()["BASE_URL"] == read
    assert config.is_https(raw) == raw.lower().startswith("https://")


@pytest.mark.parametrize("raw", ["identity.example.com", "ftp://identity.example.com", "https://",
                                 "https://identity.example.com:99999", "https://identity.example.com:0",
                                 "https://identity.example.com/?tenant=1", "https://admin:s3cret@identity.example.com"])
def test_a_malformed_base_url_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         raw: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", raw)
    with pytest.raises(ValueError, match="BASE_URL") as refused:
        config.from_environment()
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize(("raw", "hops"), [(None, 0), ("0", 0), ("2", 2), (" 1 ", 1)])
def test_trusted_proxy_hops_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str | None,
                                              hops: int) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    if raw is None:
        monkeypatch.delenv("TRUSTED_PROXY_HOPS", raising=False)
    else:
        monkeypatch.setenv("TRUSTED_PROXY_HOPS", raw)
    assert config.from_environment()["TRUSTED_PROXY_HOPS"] == hops


@pytest.mark.parametrize("raw", ["-1", "11", "one", "1.5", "yes"])
def test_a_bad_trusted_proxy_hops_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             raw: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRUSTED_PROXY_HOPS", raw)
    with pytest.raises(ValueError, match="TRUSTED_PROXY_HOPS"):
        config.from_environment()


@pytest.mark.parametrize("key", ["changeme", "s3cret", "x" * 31])
def test_a_short_secret_key_stops_the_service_at_start_naming_the_setting_not_its_value(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(ValueError, match="SECRET_KEY must be at least 32 characters") as refused:
        config.secret_key()
    assert key not in str(refused.value)


def test_a_secret_key_of_32_characters_or_the_generated_one_is_taken(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """The README's one-command run sets no SECRET_KEY: the generated one (64 characters) is made once and kept."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    assert config.secret_key() == "k" * 32
    monkeypatch.delenv("SECRET_KEY")
    generated = config.secret_key()
    assert len(generated) == 64 and config.from_environment()["SECRET_KEY"] == generated
    assert (tmp_path / "secret_key").read_text() == generated


def _read_secret_key_at(barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(config.secret_key())


def test_workers_started_together_all_read_one_whole_secret_key(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """`gunicorn -w 4 wsgi:app` on a fresh data folder: every worker makes or reads var/secret_key at
    once; each gets the one key linked in first, none an empty or half-written one."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    forked = multiprocessing.get_context("fork")
    for attempt in range(5):
        monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / str(attempt)))
        barrier, results = forked.Barrier(4), forked.Queue()
        workers = [forked.Process(target=_read_secret_key_at, args=(barrier, results)) for _ in range(4)]
        for worker in workers:
            worker.start()
        keys = {results.get(timeout=30) for _ in workers}
        for worker in workers:
            worker.join(30)
        assert len(keys) == 1 and "" not in keys
        assert keys == {(tmp_path / str(attempt) / "secret_key").read_text()}
        assert os.listdir(tmp_path / str(attempt)) == ["secret_key"]  # no temporary file left behind


def test_db_upgrade_makes_the_secret_key_so_workers_started_next_only_read_it(cli_env: dict[str, str],
                                                                              tmp_path: Path) -> None:
    result = CliRunner(env={**cli_env, "SECRET_KEY": None}).invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    made = Path(cli_env["IDENTITY_DATA_DIR"]) / "secret_key"
    assert len(made.read_text()) >= 32 and made.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("raw", ["https://identity.example.com/id p", 'https://identity.example.com/id"p',
                                 "https://identity.example.com/<id>", "https://identity.example.com/id\\p",
                                 "https://identity.example.com/id\tp", "https://identity.example.com/id\np",
                                 "https://identity.example.com/id\x01p", "https://identity.example.com/id?",
                                 "https://identity.example.com/id#", "https://identity.example.com?",
                                 "https://identity.example.com/100%", "https://identity.example.com/id|p"])
def test_a_base_url_path_with_a_character_no_url_path_holds_stops_the_service(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str) -> None:
    """README: anything but a host, a port and a path stops the service. A raw space, quote, '<' or
    backslash was encoded into a path no one typed, and a tab or an empty '?' dropped by urlsplit."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", raw)
    with pytest.raises(ValueError, match="BASE_URL"):
        config.from_environment()


@pytest.mark.parametrize("raw", ["https://h.example//identity", "https://h.example/identity//console",
                                 "https://h.example/./identity", "https://h.example/identity/..",
                                 "https://h.example/a/%2e%2E/b", "https://h.example/%2e/identity",
                                 "https://h.example/.%2E/identity"])
def test_a_base_url_path_with_an_empty_or_dot_segment_stops_the_service(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str) -> None:
    """'//identity' put before a redirect's path is a protocol-relative URL to the host `identity`;
    a browser resolves '.' and '..' away, so the prefix it sends is not the one compared."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", raw)
    with pytest.raises(ValueError, match="BASE_URL"):
        config.from_environment()


@pytest.mark.parametrize(("raw", "read"), [("https://h.example/identité", "https://h.example/identit%C3%A9"),
                                           ("https://h.example/id%20p", "https://h.example/id%20p"),
                                           ("https://h.example/identit%c3%a9", "https://h.example/identit%C3%A9"),
                                           ("https://h.example/a.b/..c/.../", "https://h.example/a.b/..c/..."),
                                           ("https://h.example/a;b=c/~x:y@z!$&'()*+,", "https://h.example/a;b=c/~x:y@z!$&'()*+,")])
def test_a_base_url_path_of_url_characters_is_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    raw: str, read: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BASE_URL", raw)
    assert config.from_environment()["BASE_URL"] == read


@pytest.mark.parametrize("scheme", ["postgresql+psycopg2", "postgresql+pg8000", "postgresql+asyncpg",
                                    "sqlite+aiosqlite", "mysql", "POSTGRESQL"])
def test_a_database_url_of_a_driver_not_installed_stops_the_service_naming_the_setting_not_its_value(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scheme: str) -> None:
    """SQLAlchemy takes any driver's URL and fails at the first connection, with a traceback."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"{scheme}://identity:s3cret@db.internal/identity")
    with pytest.raises(ValueError, match="DATABASE_URL") as refused:
        config.from_environment()
    assert "s3cret" not in str(refused.value) and "psycopg 3" in str(refused.value)


@pytest.mark.parametrize("url", ["postgresql://identity:s3cret@db.internal/identity",
                                 "postgres://db.internal/identity", "postgresql+psycopg://db.internal/identity",
                                 "sqlite:///var/identity.db", "sqlite+pysqlite:///var/identity.db"])
def test_a_database_url_of_an_installed_driver_is_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        url: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    assert config.database_url() == url


@pytest.mark.parametrize("url", ["postgresql://identity:Pa55@word-tail-secret@db.internal/identity",
                                 "postgresql://identity@x:Pa55word-tail-secret@db.internal/identity"])
def test_a_database_url_with_a_raw_at_sign_stops_the_service_saying_to_percent_encode(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    """What follows the first '@' would be read as the host and printed in the messages."""
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValueError, match="DATABASE_URL") as refused:
        config.from_environment()
    assert "word-tail-secret" not in str(refused.value) and "percent-encode" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_database_url_with_an_encoded_at_sign_is_taken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url := "postgresql://identity:Pa55%40word@db.internal/identity")
    assert config.database_url() == url


def test_a_database_url_in_a_message_hides_every_secret_of_its_query_and_shows_the_rest() -> None:
    from identity.web.cli import _safe_url

    shown = _safe_url("postgresql://identity:s3cret@db.internal/identity?connect_timeout=2&password=hunter2"
                      "&sslpassword=keypass&sslkey=/etc/identity/client.key&sslmode=verify-full&options=-cx%3Dy")
    assert not [secret for secret in ("s3cret", "hunter2", "keypass", "-cx") if secret in shown], shown
    assert "password=***" in shown and "sslpassword=***" in shown and "options=***" in shown
    assert "sslkey=/etc/identity/client.key" in shown and "sslmode=verify-full" in shown and "connect_timeout=2" in shown
