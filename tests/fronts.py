"""The app's chain of fronts as the tests walk it: the key check first, inside the base path's layer."""

from __future__ import annotations

from typing import Any

from flask import Flask

from identity.web.base_path import UnderBasePath


def first_front(app: Flask) -> Any:
    """The first front that reads a request (identity.web.keycheck.KeyCheckFirst), below UnderBasePath,
    which the app is always served through (it makes SCRIPT_NAME BASE_URL's path, "" at the root)."""
    found: Any = app.wsgi_app
    while isinstance(found, UnderBasePath):
        found = found.fallback
    return found
