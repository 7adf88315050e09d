"""SQLite's writers queue on the writers' gate (identity.db_sqlite.WriterGate): a flock() beside the
database, taken before BEGIN IMMEDIATE and let go of with the transaction on every path, taken by a
waiter within a millisecond of its holder letting go, where SQLite's busy handler sleeps 10 to 100 ms;
waited for at most the busy timeout, past which the writer fails as SQLite's own wait does.

Real threads and processes with connections of their own, on a real database file.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, PendingRollbackError

from identity.db import Database, transient_kind
from identity.db_sqlite import _GATE_FILE, WriterGate

pytestmark = pytest.mark.sqlite_only("the writers' gate is SQLite's")

# How long the first writer holds the database after the second has begun to wait: SQLite's busy
# handler tries at 128 ms of waiting and next at 178 ms, so without the gate the waiter would
# begin some 40 ms after the holder's commit.
HOLD = 0.14
# How soon after the holder lets go the waiter must have begun.
HANDOVER = 0.02


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    """Fail a test whose main thread still waits after 20 s (a gate never let go of), not hang the run:
    the alarm's exception interrupts flock()."""
    def expire(_signum: int, _frame: object) -> None:
        raise TimeoutError("the test still waits on the writers' gate")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The test database, whose SQLite connections wait 0.5 s for another's write lock, not 30."""
    database = Database(db_url, sqlite_busy_timeout=0.5)
    yield database
    database.dispose()


def gate_is_free(db: Database) -> bool:
    """Tell whether nobody holds `db`'s gate, through a file description of the test's own."""
    assert db.gate is not None
    fd = os.open(db.gate.path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # lets go of the lock if taken
    return True


def write(db: Database) -> float:
    """Begin a write transaction, commit it, and return when it had begun (the gate and SQLite's
    lock taken). A writer still waiting after 5 s fails the test (a gate never let go of)."""
    begun: list[float] = []

    def run() -> None:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
            begun.append(time.monotonic())

    writer = threading.Thread(target=run, daemon=True)  # left waiting should the gate never open
    writer.start()
    writer.join(5)
    assert begun, "the writer still waits on the gate"
    return begun[0]


def test_a_waiting_writer_begins_as_soon_as_the_holder_commits(db: Database) -> None:
    holding, released = threading.Event(), []

    def hold() -> None:
        with db.transaction() as session:
            session.execute(text("SELECT 1"))
            holding.set()
            time.sleep(HOLD)
        released.append(time.monotonic())

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    waiting_since = time.monotonic()
    begun = write(db)  # a connection of its own: the holder's is checked out
    holder.join()
    assert begun - waiting_since >= HOLD - 0.01  # it did wait for the holder
    assert begun - released[0] < HANDOVER


HOLDER = """
import sys, time
from sqlalchemy import text
from identity.db import Database
db = Database(sys.argv[1])
with db.transaction() as session:
    session.execute(text("SELECT 1"))
    print("held", flush=True)
    if sys.stdin.readline().strip() == "wait":
        time.sleep(float(sys.argv[2]))
        session.info["done"] = True
    else:
        time.sleep(60)  # until killed
print(time.monotonic(), flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(db: Database) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the database in a write transaction until told, or killed."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db.url, str(HOLD)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_writer_in_another_process_is_handed_the_gate_at_once(db: Database, holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("wait\n")
    holder.stdin.flush()
    waiting_since = time.monotonic()
    begun = write(db)
    released = float(holder.stdout.readline())  # CLOCK_MONOTONIC: one clock for every process
    assert begun - waiting_since >= HOLD - 0.02
    assert begun - released < HANDOVER


def test_a_holder_killed_mid_transaction_frees_the_gate_at_once(db: Database, holder: subprocess.Popen[str]) -> None:
    assert not gate_is_free(db)
    killed: list[float] = []

    def kill() -> None:
        time.sleep(HOLD)
        killed.append(time.monotonic())
        os.kill(holder.pid, signal.SIGKILL)

    threading.Thread(target=kill).start()
    begun = write(db)  # the kernel lets go of the dead holder's gate (and SQLite's lock) as it dies
    assert begun - killed[0] < HANDOVER


@pytest.fixture
def short(db: Database) -> Iterator[Database]:
    """The test database again, whose writers wait 0.3 s for the gate and SQLite's lock."""
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE written (id INTEGER)")
    database = Database(db.url, sqlite_busy_timeout=0.3)
    yield database
    database.dispose()


def _write_in_a_transaction(db: Database) -> None:
    with db.transaction() as session:  # the gate is taken in the session's after_begin
        session.execute(text("INSERT INTO written VALUES (1)"))


def _write_on_a_connection(db: Database) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql("INSERT INTO written VALUES (1)")


def _write_keyed(db: Database) -> None:
    with db.keyed_write() as conn:
        conn.connection.driver_connection.execute("INSERT INTO written VALUES (1)")


@pytest.mark.parametrize("way", [_write_in_a_transaction, _write_on_a_connection, _write_keyed])
def test_a_writer_waits_for_a_holder_that_never_lets_go_at_most_the_busy_timeout(
        short: Database, holder: subprocess.Popen[str], way: Any) -> None:
    """Another process holds the gate and SQLite's lock until killed: the writer fails after the busy
    timeout with SQLite's transient "database is locked", wrote nothing, holds no gate, and its
    connection is back in the pool; once the holder is gone the same write goes through."""
    outcome: list[BaseException | None] = []
    held_after: list[bool] = []

    def run() -> None:
        try:
            way(short)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)
        assert short.gate is not None
        held_after.append(short.gate.holds())

    started = time.monotonic()
    writer = threading.Thread(target=run, daemon=True)  # left waiting should the wait have no bound
    writer.start()
    writer.join(5)
    waited = time.monotonic() - started
    assert outcome, "the writer still waits on the gate after 5 s"
    error = outcome[0]
    assert error is not None and transient_kind(error) is not None, error
    assert "writers' gate" in str(error)  # the gate's bound, not SQLite's busy handler behind it
    assert 0.3 <= waited < 1.5
    assert held_after == [False] and short.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not gate_is_free(short)  # still the holder's
    holder.kill()
    holder.wait()
    way(short)
    with short.reading() as session:
        assert session.execute(text("SELECT count(*) FROM written")).scalar_one() == 1
    assert gate_is_free(short)


def test_the_gate_is_let_go_of_when_a_transaction_commits_or_rolls_back(db: Database) -> None:
    write(db)
    assert gate_is_free(db)
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.execute(text("SELECT 1"))
        assert not gate_is_free(db)
        raise RuntimeError("the block fails")
    assert gate_is_free(db)
    with db.begin() as conn:
        assert not gate_is_free(db)
        conn.exec_driver_sql("SELECT 1")
    assert gate_is_free(db)
    with pytest.raises(RuntimeError), db.begin():
        raise RuntimeError("the block fails")
    assert gate_is_free(db)
    assert db.gate is not None and not db.gate.holds()


def test_a_keyed_write_left_open_by_an_error_frees_the_gate_when_the_pool_rolls_it_back(db: Database) -> None:
    with pytest.raises(RuntimeError), db.keyed_write() as conn:
        conn.connection.driver_connection.execute("CREATE TABLE left_open (id INTEGER)")
        assert not gate_is_free(db)
        raise RuntimeError("the block fails; its transaction goes back to the pool open")
    assert gate_is_free(db)
    with db.keyed_write() as conn:  # the pool rolled it back: nothing was written, the next one begins
        names = conn.connection.driver_connection.execute("SELECT name FROM sqlite_master WHERE name = 'left_open'")
        assert names.fetchall() == []
    assert gate_is_free(db)


def test_an_invalidated_or_detached_connection_lets_go_of_the_gate(db: Database) -> None:
    with pytest.raises(PendingRollbackError), db.begin() as conn:  # its commit finds no connection
        assert not gate_is_free(db)
        conn.invalidate()  # the pool closes the DBAPI connection
        assert gate_is_free(db)
    with db.transaction() as session:
        session.execute(text("SELECT 1"))
        assert not gate_is_free(db)
        session.connection().connection.detach()  # the connection leaves the pool
        assert gate_is_free(db)
    assert db.gate is not None and not db.gate.holds()
    write(db)  # and the next writer takes it as usual
    assert gate_is_free(db)


def test_letting_go_twice_is_harmless(db: Database) -> None:
    assert db.gate is not None
    with db.begin() as conn:
        info = conn.connection.info
        WriterGate.leave(info)
        WriterGate.leave(info)
        assert gate_is_free(db) and not db.gate.holds()
    WriterGate.forget(info)
    WriterGate.forget(info)
    write(db)
    assert gate_is_free(db) and not db.gate.holds()


def test_a_second_write_in_a_thread_that_holds_the_gate_meets_sqlites_lock_not_itself(db: Database) -> None:
    outcome: list[BaseException | None] = []

    def nested() -> None:
        try:
            with db.transaction() as outer:
                outer.execute(text("SELECT 1"))
                with db.transaction() as inner:  # another connection: it would wait on its own gate forever
                    inner.execute(text("SELECT 1"))
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "the second write waited on the gate its own thread holds"
    assert isinstance(outcome[0], OperationalError) and "database is locked" in str(outcome[0])  # as without the gate
    assert gate_is_free(db)
    assert db.gate is not None and not db.gate.holds()


def test_a_connections_gate_file_is_closed_on_exec_and_closed_with_it(db: Database) -> None:
    assert db.gate is not None
    with db.begin() as conn:
        fd = conn.connection.info[_GATE_FILE].fd
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.readlink(f"/proc/self/fd/{fd}") == db.gate.path
    assert stat.S_IMODE(os.stat(db.gate.path).st_mode) == 0o600
    db.engine.dispose()  # the pool closes its connections, and each its gate file
    assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != db.gate.path
    write(db)


def test_a_forked_child_opens_its_own_description_and_waits_for_the_parent(db: Database) -> None:
    with db.begin() as conn:
        info = conn.connection.info
        pid = os.fork()
        if pid == 0:  # the child: the connection's inherited description is the parent's, which holds it
            code = 1
            try:
                assert db.gate is not None
                started = time.monotonic()
                db.gate.enter(info)
                code = 0 if time.monotonic() - started >= 0.2 else 2
            finally:
                os._exit(code)
        time.sleep(0.3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child took the gate while the parent held it"


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite:///file:{folder}/uri.db?uri=true"])
def test_no_gate_for_a_database_in_memory_or_a_uri(url: str, tmp_path: Path) -> None:
    database = Database(url.format(folder=tmp_path))
    try:
        assert database.gate is None
        write(database)
    finally:
        database.dispose()
