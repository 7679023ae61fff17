"""A private PostgreSQL server for fault tests.

The shared server on 127.0.0.1:5432 must stay up for every other test, so a test that
needs PostgreSQL to go away (an outage, a crash) gets a server of its own:

    with PostgresTemplate() as template:                   # one initdb per session
        with PrivateServer(template) as server:            # a copy of it, started
            server.create_database("warehouse")
            server.stop()                                  # immediate: like a crash or an outage
            server.start()                                 # same port, same data
            server.kill()                                  # SIGKILL of the postmaster

Each server lives in its own temporary directory (`/dev/shm/dws-private-pg-<test pid>-...`,
see `base_dir()`):
`data/` (the cluster), the Unix socket and `postgres.log`. Leaving the `with` block (or
`close()`) stops the server and removes the directory, whatever happened in the test.

Running as root: PostgreSQL refuses to run as root, so every directory is handed to the
`postgres` OS user and `initdb` and the server run as that user (the child process drops
to it before exec, which is what `runuser -u postgres` does). As any other user they run
as that user.

**The server dies with the test process.** The postmaster is started directly, as a
child of the test process, with PR_SET_PDEATHSIG = SIGQUIT (PostgreSQL's immediate
shutdown, which also ends every backend): when the test process dies, even by SIGKILL,
the kernel stops the server. `pg_ctl start` cannot give that guarantee: it forks, calls
setsid() and exits, so the postmaster is re-parented to init and a parent-death signal
is cleared by the fork (and by the user switch of runuser). `stop()` therefore sends the
signal `pg_ctl stop -m <mode>` would send (SIGTERM smart, SIGINT fast, SIGQUIT immediate)
and waits for the postmaster to exit. A parent-death signal fires when the *thread* that
started the server ends: start servers from a thread that outlives them (the main
thread, as pytest fixtures do). The directory of a test process killed before its
teardown is removed by `sweep_stale()` the next time a template or server is created.

Settings favour speed (`fsync=off`, `full_page_writes=off`, no initdb sync) but stay
safe against a *process* crash: a committed row survives `kill()` and `stop()` because
the kernel keeps what PostgreSQL wrote. `synchronous_commit` is deliberately left on: with
it off, a commit acknowledged less than ~200 ms before `kill()` could be lost, which would
make crash tests flaky. Only a crash of the machine could lose data, which no test does.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import psycopg
from psycopg import sql

PREFIX = "dws-private-pg-"
SERVER_OS_USER = "postgres"
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
FAST_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "jit": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
}


# --- the PostgreSQL binaries and the OS user ------------------------------------------

@functools.cache
def bin_dir() -> Path:
    """The directory of initdb and postgres: $PG_BINDIR, else initdb on the PATH (its
    symlink resolved, so /usr/local/bin/initdb gives /usr/lib/postgresql/15/bin), else the
    newest /usr/lib/postgresql/<N>/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                       key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if installed:
        return installed[-1].parent
    raise RuntimeError("initdb not found: put PostgreSQL's bin directory on the PATH or set PG_BINDIR")


def _server_ids() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(SERVER_OS_USER)
    return entry.pw_uid, entry.pw_gid


def _as_server_user() -> dict:
    ids = _server_ids()
    return {} if ids is None else dict(user=ids[0], group=ids[1], extra_groups=[])


def _chown_tree(path: Path) -> None:
    ids = _server_ids()
    if ids is None:
        return
    os.chown(path, *ids)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), *ids, follow_symlinks=False)


def _server_env() -> dict:
    """The environment without libpq/server variables (PGDATA, PGPORT, PGOPTIONS...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _die_with_parent(parent_pid: int) -> None:
    """In the child, after the switch to the server user and before exec: SIGQUIT
    (immediate shutdown) when the test process dies. Set after the user switch because
    changing credentials clears it."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody would stop us
        os._exit(1)


# --- processes, ports, directories ---------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether any socket on this machine listens on TCP `port` (from /proc/net/tcp*,
    so it sees every address and connects to nothing)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                return True
    return False


def processes_in(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is in `directory`: every PostgreSQL
    process of a data directory works in it (the postmaster chdirs there, backends
    inherit it), including backends orphaned by a killed postmaster."""
    target = os.path.realpath(directory)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:  # gone, a zombie, or not ours
            continue
        if cwd == target or cwd.startswith(target + os.sep):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its new parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _end_processes_in(directory: Path, grace: float) -> None:
    """Wait up to `grace` seconds for the processes working in `directory` to exit, then
    SIGKILL the rest."""
    deadline = time.monotonic() + grace
    while processes_in(directory) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in processes_in(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while processes_in(directory) and time.monotonic() < deadline:
        time.sleep(0.02)


def sweep_stale(place: Path | None = None) -> list[Path]:
    """Remove the directories in `place` (default: base_dir()) left by test processes
    that died before their teardown (named after the pid of the process that made them),
    ending any server process still working in them. Directories of living processes are
    left alone."""
    removed = []
    for path in Path(place or base_dir()).glob(PREFIX + "*"):
        owner = path.name[len(PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)) or not path.is_dir():
            continue
        _end_processes_in(path, grace=0)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def base_dir() -> Path:
    """Where servers live: $DWS_PRIVATE_PG_TMPDIR, else /dev/shm when it has 1 GiB free
    (memory: copying the template there takes ~0.03 s against 0.04-1 s on this machine's
    disk, and a killed server loses nothing, since its files are in memory, not in the
    process), else the temporary directory."""
    if os.environ.get("DWS_PRIVATE_PG_TMPDIR"):
        return Path(os.environ["DWS_PRIVATE_PG_TMPDIR"])
    try:
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK | os.X_OK):
            return Path("/dev/shm")
    except OSError:
        pass
    return Path(tempfile.gettempdir())


_swept = False


def _make_root(label: str) -> Path:
    global _swept
    if not _swept:
        for place in {base_dir(), Path("/dev/shm"), Path(tempfile.gettempdir())}:
            if place.is_dir():
                sweep_stale(place)
        _swept = True
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{label}-", dir=base_dir()))
    _chown_tree(root)
    return root


def _initdb(data_dir: Path) -> None:
    result = subprocess.run(
        [str(bin_dir() / "initdb"), "-D", str(data_dir), "--auth=trust", f"--username={SERVER_OS_USER}",
         "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
        cwd=data_dir.parent, env=_server_env(), capture_output=True, text=True, **_as_server_user())
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")


# --- the template and the server -----------------------------------------------------

class PostgresTemplate:
    """One initdb'd data directory (never started) that servers copy: copying it is
    about three times faster than initdb. Remove it with `close()` or a `with` block."""

    def __init__(self) -> None:
        self.root: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "create() first"
        return self.root / "data"

    def create(self) -> "PostgresTemplate":
        self.root = _make_root("template")
        try:
            _initdb(self.data_dir)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "PostgresTemplate":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()


class _Resources:
    """What must be cleaned up, kept apart from the server object so that a finalizer
    (run at the latest when the interpreter exits) can clean up a server never closed."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.root: Path | None = None

    def cleanup(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self.root is not None:
            _end_processes_in(self.root, grace=5)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class ServerStartError(RuntimeError):
    pass


class PrivateServer:
    """A PostgreSQL server of its own on 127.0.0.1:<free port>, trust auth, user
    `postgres`. `create()` (or `with`) makes and starts it; `close()` stops it and removes
    its directory. `template`: a PostgresTemplate or an initdb'd data directory to copy;
    None runs initdb. `settings`: extra `-c` settings over FAST_SETTINGS."""

    host = "127.0.0.1"
    user = SERVER_OS_USER

    def __init__(self, template: PostgresTemplate | Path | None = None,
                 settings: dict[str, str] | None = None) -> None:
        self._template = template.data_dir if isinstance(template, PostgresTemplate) else template
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.port = free_port(self.host)
        self._resources = _Resources()
        self._finalizer = weakref.finalize(self, self._resources.cleanup)

    # where things are
    @property
    def root(self) -> Path:
        assert self._resources.root is not None, "create() first"
        return self._resources.root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        process = self._resources.process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def params(self) -> dict:
        """Keyword arguments for psycopg.connect besides dbname (like conftest.POSTGRES)."""
        return dict(host=self.host, port=self.port, user=self.user)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    # life cycle
    def create(self, timeout: float = 30.0) -> "PrivateServer":
        self._resources.root = _make_root("server")
        try:
            if self._template is not None:
                shutil.copytree(self._template, self.data_dir, symlinks=True)
                _chown_tree(self.data_dir)
            else:
                _initdb(self.data_dir)
            for attempt in range(3):
                try:
                    self.start(timeout)
                    break
                except ServerStartError as error:  # the free port was taken meanwhile
                    if attempt == 2 or "already in use" not in str(error):
                        raise
                    self.port = free_port(self.host)
        except BaseException:
            self.close()
            raise
        return self

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again: same port, same data; after a crash PostgreSQL
        recovers from its WAL first) and wait until it accepts connections."""
        if self.is_running():
            raise RuntimeError("the server is running")
        # Backends orphaned by kill() keep the old shared memory attached, and PostgreSQL
        # refuses to start while they do; they notice the postmaster's death within ms.
        _end_processes_in(self.data_dir, grace=10)
        command = [str(bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                   "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.socket_dir}"]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self._resources.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.root, env=_server_env(), start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()), **_as_server_user())
        process = self._resources.process
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                self._resources.process = None
                raise ServerStartError(f"postgres exited with {process.returncode}:\n{self._log_since(log_offset)}")
            if self._ready(process.pid) and self._accepts_connections():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(f"postgres did not accept connections in {timeout} s:\n"
                                       f"{self._log_since(log_offset)}")
            time.sleep(0.01)

    def stop(self, mode: str = "immediate", timeout: float = 30.0) -> None:
        """Stop the server as `pg_ctl stop -m <mode>` would: `immediate` (the default)
        ends every session at once without a checkpoint, like a crash or an outage; `fast`
        ends sessions and checkpoints; `smart` waits for the sessions to end. Returns when
        the postmaster and all its processes have exited. No-op when stopped."""
        process = self._resources.process
        if process is None or process.poll() is not None:
            self._resources.process = None
            return
        process.send_signal(STOP_SIGNALS[mode])
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(f"{mode} shutdown took more than {timeout} s; the postmaster was killed")
        self._resources.process = None

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash). Its backends are orphaned and exit on their own
        shortly after; `start()` waits for them."""
        process = self._resources.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._resources.process = None

    def close(self) -> None:
        """Stop the server (immediate), end any process left in its directory, remove the
        directory. Idempotent; also run when the object is collected or at exit."""
        self._finalizer()

    def __enter__(self) -> "PrivateServer":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()

    # using it
    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(dbname=dbname, **self.params, **kwargs)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (quoted as an identifier); returns its DSN."""
        with self.connect(autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def server_processes(self) -> list[int]:
        """Pids of every process of this server (postmaster, backends, orphans)."""
        return processes_in(self.data_dir) if self._resources.root is not None else []

    # helpers
    def _ready(self, pid: int) -> bool:
        """postmaster.pid is this postmaster's (not a stale one left by kill()) and says
        `ready` (its 8th line, which `pg_ctl start -w` watches too)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def _accepts_connections(self) -> bool:
        try:
            with self.connect(connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<PrivateServer {self.host}:{self.port} {state}>"


__all__ = ["PostgresTemplate", "PrivateServer", "ServerStartError", "FAST_SETTINGS", "bin_dir",
           "base_dir", "free_port", "listening", "processes_in", "sweep_stale"]
