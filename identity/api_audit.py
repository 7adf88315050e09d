"""Admin API for the audit log: reading, exporting, checkpoints (under /api/v1)."""

from flask import Blueprint

bp = Blueprint("api_audit", __name__, url_prefix="/api/v1")
