"""Several hosts migrating one PostgreSQL database at once, as they do when each host's start runs
`identity serve` (which migrates first) or `identity db upgrade` (DESIGN.md 7: any number of
processes and hosts behind a load balancer; README: "`identity serve` ... does both steps").

From a hostile operator's review: the docstring says what the commands did.
"""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
from alembic.script import ScriptDirectory
from sqlalchemy import text

from identity.db import Database
from identity.migrate import alembic_config, upgrade
from tests.identity.test_serve import BIN, ROOT
from tests.pgcluster import PostgresCluster

HOSTS = 3


def test_hosts_that_upgrade_one_database_at_once_all_start(pg_cluster: PostgresCluster) -> None:
    """Each process read the schema's version, found it behind, and ran the same migration: the
    first to commit won, and the others died with a traceback (the column or table "already
    exists", or a UniqueViolation on `pg_type_typname_nsp_index`) and exit 1, so that all hosts
    but one failed to start on the new release. The migrations must be serialised (a lock taken
    before the version is read, held until it is moved).

    To start the hosts at the same moment, the test holds the version table locked until every
    host waits for it, as a slower host would reach it a moment later in production."""
    url = pg_cluster.create_database("upgraded_by_three_hosts")
    script = ScriptDirectory.from_config(alembic_config(url))
    upgrade(url, script.get_revision(script.get_current_head()).down_revision)  # the release before
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "s" * 32, "PYTHONPATH": str(ROOT)}
    with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user="postgres",
                         dbname="upgraded_by_three_hosts") as holder:
        holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        hosts = [subprocess.Popen([str(BIN / "identity"), "db", "upgrade"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _ in range(HOSTS)]
        deadline = time.monotonic() + 60
        with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user="postgres",
                             dbname="upgraded_by_three_hosts", autocommit=True) as watcher:
            while (watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone() or (0,))[0] < HOSTS:
                assert time.monotonic() < deadline, "the hosts never reached the version table"
                time.sleep(0.1)
        holder.rollback()
    outcomes = [(host.wait(timeout=300), host.stderr.read().decode() if host.stderr else "") for host in hosts]
    for code, err in outcomes:
        assert code == 0 and "Traceback" not in err, err[-1500:]
    database = Database(url)
    try:
        with database.reading() as session:
            assert session.scalar(text("SELECT version_num FROM alembic_version")) == script.get_current_head()
    finally:
        database.dispose()
