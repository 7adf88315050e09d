"""SCIM 2.0 endpoints under /scim/v2."""

from flask import Blueprint

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
