"""The private PostgreSQL server of the fault tests (tests/pg_server.py): it keeps its data
across a stop or a crash, refuses connections while it is down, and leaves nothing behind,
not even when the test process is killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.pg_server import PrivateServer, listening, processes_in, sweep_stale

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_table_survives_a_stop_and_connections_fail_while_the_server_is_down(private_postgres):
    server = private_postgres
    dsn = server.create_database("warehouse")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE sales (id int PRIMARY KEY, amount numeric)")
        conn.execute("INSERT INTO sales VALUES (1, 9.5), (2, 20)")
    port = server.port

    server.stop()  # immediate, like an outage
    assert not server.is_running() and not listening(port)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)

    server.start()
    assert server.port == port
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id, amount FROM sales ORDER BY id").fetchall() == [(1, 9.5), (2, 20)]


def test_committed_rows_survive_a_sigkill_of_the_postmaster(private_postgres):
    server = private_postgres
    with server.connect(autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int)")
        conn.execute("INSERT INTO events SELECT generate_series(1, 1000)")
    postmaster = server.pid

    server.kill()
    assert gone(postmaster)
    with pytest.raises(psycopg.OperationalError):
        server.connect(connect_timeout=2)

    server.start()  # crash recovery, after the orphaned backends exit
    with server.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1000,)


def test_stop_ends_open_sessions_and_every_mode_stops(private_postgres):
    server = private_postgres
    session = server.connect(autocommit=True)
    server.stop()
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    for mode in ("fast", "smart"):
        server.start()
        server.stop(mode)
        assert server.server_processes() == []


def test_teardown_stops_the_server_and_removes_its_directory_even_when_the_test_fails(private_postgres_template):
    server = PrivateServer(private_postgres_template)
    with pytest.raises(ZeroDivisionError):
        with server:
            root, port, postmaster = server.root, server.port, server.pid
            assert listening(port) and processes_in(root)
            1 / 0
    assert not listening(port)
    assert gone(postmaster) and processes_in(root) == []
    assert not root.exists()


def test_teardown_after_a_crash_ends_the_orphaned_backends_too(private_postgres_template):
    with PrivateServer(private_postgres_template) as server:
        root, port = server.root, server.port
        server.kill()
    assert not listening(port) and processes_in(root) == [] and not root.exists()


def test_each_server_has_its_own_port_data_and_socket(private_postgres, private_postgres_session):
    assert private_postgres.port != private_postgres_session.port
    private_postgres.create_database("only_here")
    with private_postgres_session.connect() as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert "only_here" not in names
    assert (private_postgres.socket_dir / f".s.PGSQL.{private_postgres.port}").is_socket()
    assert not Path(f"/var/run/postgresql/.s.PGSQL.{private_postgres.port}").exists()


def test_the_server_dies_with_the_test_process_even_on_sigkill(private_postgres_template):
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from tests.pg_server import PrivateServer\n"
         "server = PrivateServer(Path(sys.argv[1])).create()\n"
         "print(server.port, server.pid, server.root, flush=True)\n"
         "time.sleep(600)\n",
         str(private_postgres_template.data_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port, postmaster, root = child.stdout.readline().split()
        port, postmaster, root = int(port), int(postmaster), Path(root)
        assert listening(port)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()

    assert wait_until(lambda: gone(postmaster) and not listening(port) and not processes_in(root))
    assert root.exists()  # no teardown ran: the next session's sweep removes it
    assert root in sweep_stale()
    assert not root.exists()
