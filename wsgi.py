"""WSGI entry point: `gunicorn -w 4 wsgi:app` once `identity db upgrade` has migrated the database."""

from identity import create_app

app = create_app()
