"""scim2-server (python-scim's reference SCIM server), in memory, for benchmarks/bench_peer.py.

Served by gunicorn with `--preload` from the peer's own virtualenv (bench_peer.py makes it, with
scim2-server pinned), so that its dependencies never meet the service's. At import it fills its
in-memory storage through its own WSGI application, as a client would: PEER_USERS users named as
bench_peer names them and one group of PEER_GROUP_MEMBERS of them; then it writes the users' and
the group's ids to PEER_IDS. Loaded before gunicorn forks, every worker starts with the same
resources (each worker keeps its own copy afterwards: a user created on one is unknown to the
other, which the measured requests never need).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

TOKEN = os.environ.get("PEER_TOKEN", "peer-token")
provider = ScimProvider.from_discovery(load_default_schemas().values(), load_default_resource_types().values(),
                                       config=load_default_service_provider_config())
scim = BearerTokenApplication(InMemoryStorage(), provider, service=ScimService(provider, secret="bench"),
                              bearer_tokens=[TOKEN])


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """scim2-server's application, and /healthz for the benchmark to wait on."""
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    return scim(environ, start_response)


def _call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
               "CONTENT_TYPE": "application/scim+json", "CONTENT_LENGTH": str(len(data)),
               "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "wsgi.input": io.BytesIO(data), "wsgi.errors": io.StringIO()}
    status: list[str] = []
    out = b"".join(scim(environ, lambda s, h, *a: status.append(s)))
    if not status[0].startswith("2"):
        raise RuntimeError(f"{method} {path}: {status[0]} {out[:300]!r}")
    return json.loads(out) if out else {}


def _load() -> None:
    users, members = int(os.environ.get("PEER_USERS", "0")), int(os.environ.get("PEER_GROUP_MEMBERS", "0"))
    ids = []
    for i in range(users):
        name = f"user{i}@bench.test"
        made = _call("POST", "/v2/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "externalId": f"ext-{i}",
            "displayName": f"Bench User {i}", "name": {"givenName": "Bench", "familyName": f"User {i}"},
            "emails": [{"value": name, "type": "work", "primary": True}], "active": True})
        ids.append(made["id"])
    group = _call("POST", "/v2/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                         "displayName": "Bench group", "externalId": "bench-group",
                                         "members": [{"value": uid} for uid in ids[:members]]})
    if os.environ.get("PEER_IDS"):
        with open(os.environ["PEER_IDS"], "w") as handle:
            json.dump({"users": ids, "group": group["id"]}, handle)


_load()
