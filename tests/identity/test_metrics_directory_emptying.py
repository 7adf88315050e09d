"""`PROMETHEUS_MULTIPROC_DIR` is "emptied at start" (README) of an earlier run's counters: prometheus_client's
own files, and nothing else the folder holds. An operator who keeps the service's state in one folder
(`IDENTITY_DATA_DIR=/srv/identity`, `PROMETHEUS_MULTIPROC_DIR=/srv/identity`) must not lose the
embedded database to it.

From a hostile operator's review: the docstring says what the service did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from identity.migrate import upgrade
from identity.web import metrics, metrics_serve


def test_emptying_the_counters_folder_keeps_a_database_kept_there(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """`identity serve` migrated the embedded database, then its `on_starting` hook deleted every
    `*.db` file of the folder, `identity.db` included: the workers opened a new, empty file, /healthz
    answered ok, and every org, member and audit event was gone (seen: `no such table: orgs`)."""
    url = f"sqlite:///{tmp_path / 'identity.db'}"
    upgrade(url)
    database = Database(url)
    try:
        with database.transaction() as session:
            orgs.create_org(session, system_actor("tests"), "Kept", owner_email="owner@kept.test")
    finally:
        database.dispose()
    (tmp_path / "counter_4242.db").write_bytes(b"")  # an earlier run's worker: this one goes
    (tmp_path / "histogram_4242.db").write_bytes(b"")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics_serve.prepare_directory()
    assert not (tmp_path / "counter_4242.db").exists() and not (tmp_path / "histogram_4242.db").exists()
    assert (tmp_path / "identity.db").exists(), "the embedded database was deleted with the counters"
    database = Database(url)
    try:
        with database.reading() as session:
            assert orgs.get_org_by_slug(session, "kept").name == "Kept"
    finally:
        database.dispose()


def test_the_counters_are_added_up_past_a_database_kept_in_their_folder(tmp_path: Path) -> None:
    """prometheus_client's collector reads every `*.db` of the folder as its own: the SQLite file made
    each scrape of /metrics (and of the METRICS_PORT listener) fail with struct.error."""
    from prometheus_client import generate_latest
    from prometheus_client.mmap_dict import MmapedDict

    upgrade(f"sqlite:///{tmp_path / 'identity.db'}")
    worker = MmapedDict(str(tmp_path / "counter_4242.db"))  # what a worker's counter writes
    worker.write_value(json.dumps(["identity_kept", "identity_kept_total", {}, "Kept"]), 3.0, 0.0)
    worker.close()
    assert metrics.worker_files(tmp_path) == [tmp_path / "counter_4242.db"]
    assert "identity_kept_total 3.0" in generate_latest(metrics.summed_registry(tmp_path)).decode()
