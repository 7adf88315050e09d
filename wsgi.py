"""WSGI entry point: `gunicorn -w 4 wsgi:app` once `identity db upgrade` has migrated the database."""

from identity.web.app import create_app

app = create_app()
