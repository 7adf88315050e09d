"""SAML 2.0 SP endpoints under /saml/<org>/, and /me."""

from flask import Blueprint

bp = Blueprint("saml", __name__)
