"""`identity serve` and the README's production gunicorn command run gunicorn with the same settings.

Both read identity.web.metrics_serve (its names are gunicorn's settings); this compares every one of
gunicorn's settings as each way ends up with it, the README's command read from the README itself,
so a setting given to one way only (as `pre_request`, `timeout`, `control_socket_disable` and
`forwarder_headers` were, to `identity serve` alone) fails here.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from gunicorn.app.wsgiapp import WSGIApplication

from identity.web import server

ROOT = Path(__file__).resolve().parents[2]
# Settings that differ by design: where the configuration came from, the app named on the command line and
# the process title made from it.
NOT_COMPARED = {"config", "wsgi_app", "default_proc_name"}


def readme_gunicorn_command() -> list[str]:
    """The production command of the README's "Running in production", as its words."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"^ +\.venv/bin/gunicorn (.*?)\n(?! {8})", text.replace("\\\n", ""), re.MULTILINE)
    assert found, "the README's gunicorn command"
    return ["gunicorn", *shlex.split(found.group(1))]


def gunicorn_settings(cfg: Any) -> dict[str, Any]:
    return {name: setting.value for name, setting in cfg.settings.items() if name not in NOT_COMPARED}


def test_identity_serve_and_the_readme_command_give_gunicorn_the_same_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    command = readme_gunicorn_command()
    assert "python:identity.web.metrics_serve" in command and command[-1] == "wsgi:app", command
    monkeypatch.setattr(sys, "argv", command)
    readme = gunicorn_settings(WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg)
    host, port = readme["bind"][0].rsplit(":", 1)
    serve = gunicorn_settings(server._Server(server.options(host, int(port), readme["workers"],
                                                            readme["threads"])).cfg)
    differ = {name: (readme[name], serve[name]) for name in readme if readme[name] != serve[name]}
    assert not differ, differ
    assert serve["pre_request"].__name__ == "close_past_drain_bound" and serve["timeout"] == 60
    assert serve["control_socket_disable"] is True and serve["forwarder_headers"] == []
