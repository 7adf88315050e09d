"""The ceiling for benchmarks/bench_scim.py: a trivial Flask route, served exactly like the service.

    gunicorn --pythonpath benchmarks ceiling_app:app

GET / answers "ok". Whatever the SCIM endpoints reach is measured against what this reaches with
the same gunicorn settings and the same client: the cost of HTTP, WSGI and Flask with no work.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def ok() -> str:
    return "ok"
