"""Running the PostgreSQL client tools (`pg_dump`, `pg_restore`) as child processes that
can be cancelled, time out, and see only what they need of the service's environment.

The child gets PATH, HOME, LANG, LC_*, libpq's PGPASSFILE and PGSSL* settings, and
PGPASSWORD only when the driver has a password for the target: nothing else of the
service's environment (its own secrets included) reaches it. It is polled every
`POLL_SECONDS`; on cancel, timeout or any error while waiting it is stopped and reaped,
so no tool outlives the call that started it."""

import os
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping

from services.snapshots.broker import die_with_parent
from services.snapshots.drivers.base import CopyCancelled, DriverError

POLL_SECONDS = 0.1
STREAM_BLOCK_BYTES = 1 << 20
STOP_GRACE_SECONDS = 5.0
PASSED_NAMES = frozenset({"PATH", "HOME", "LANG", "PGPASSFILE"})
PASSED_PREFIXES = ("LC_", "PGSSL")


def tool_environment(password: str | None, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    env = {name: value for name, value in environ.items()
           if name in PASSED_NAMES or name.startswith(PASSED_PREFIXES)}
    if password:
        env["PGPASSWORD"] = password  # the child's environment only, never its arguments
    return env


def run_tool(args: list[str], env: dict[str, str], timeout: float,
             cancel: threading.Event | None = None, on_poll: Callable[[], None] | None = None) -> str:
    """Run a tool to the end and return its output; DriverError if it fails or times
    out, CopyCancelled if `cancel` is set first."""
    return finish_tool(start_tool(args, env), args, timeout, cancel, on_poll)


def start_tool(args: list[str], env: dict[str, str], stderr=subprocess.PIPE, text: bool = True) -> subprocess.Popen:
    """Start a tool that dies with this process (PR_SET_PDEATHSIG), even by SIGKILL: no
    orphaned pg_dump goes on writing into an attempt's directory after a crash."""
    try:
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, text=text, preexec_fn=die_with_parent())
    except OSError as error:
        raise DriverError(f"{args[0]} could not run: {error}") from error


def finish_tool(process: subprocess.Popen, args: list[str], timeout: float,
                cancel: threading.Event | None = None, on_poll: Callable[[], None] | None = None) -> str:
    """Wait for a started tool (see `run_tool`); it is stopped if anything goes wrong."""
    with process:
        try:
            stdout, stderr = _wait(process, args[0], timeout, cancel, on_poll)
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0:
        raise DriverError(f"{args[0]} failed: {stderr.strip()[-500:]}")
    return stdout


def _wait(process: subprocess.Popen, name: str, timeout: float,
          cancel: threading.Event | None, on_poll: Callable[[], None] | None) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:  # communicate() keeps draining the pipes, so a chatty tool never blocks on them
            return process.communicate(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if on_poll is not None:
            on_poll()
        if cancel is not None and cancel.is_set():
            raise CopyCancelled(f"{name} was cancelled")
        if time.monotonic() >= deadline:
            raise DriverError(f"{name} timed out after {timeout:g} s")


def stop_tool(process: subprocess.Popen) -> None:
    """Stop a started tool and reap it."""
    with process:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    # SIGTERM first: pg_dump and pg_restore then send a cancel request for their query,
    # so the server-side backend lets go of its locks at once. After SIGKILL the backend
    # would keep waiting (on a lock, say) until it next talked to the dead socket.
    process.terminate()
    try:
        process.communicate(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def stream_tool(args: list[str], env: dict[str, str], timeout: float, write: Callable[[bytes], None],
                cancel: threading.Event | None = None, on_poll: Callable[[], None] | None = None,
                poll_seconds: float | Callable[[], float] = POLL_SECONDS) -> None:
    """Run a tool that writes its output to stdout, handing each block to `write` as it
    comes (nothing of it is kept on disk); same errors as `run_tool`. If `write` or
    `on_poll` raises, the tool is stopped and the error goes on. `on_poll` is called at
    least every `poll_seconds` (a number, or a function asked at each wait) while the tool
    runs. The tool dies with this process."""
    with tempfile.TemporaryFile() as errors:
        process = start_tool(args, env, stderr=errors, text=False)
        deadline = time.monotonic() + timeout
        with process:
            try:
                while True:
                    wait = poll_seconds() if callable(poll_seconds) else poll_seconds
                    ready, _, _ = select.select([process.stdout], [], [], wait)
                    if ready:
                        block = os.read(process.stdout.fileno(), STREAM_BLOCK_BYTES)
                        if not block:
                            break
                        write(block)
                    if on_poll is not None:
                        on_poll()
                    if cancel is not None and cancel.is_set():
                        raise CopyCancelled(f"{args[0]} was cancelled")
                    if time.monotonic() >= deadline:
                        raise DriverError(f"{args[0]} timed out after {timeout:g} s")
                process.wait(timeout=max(deadline - time.monotonic(), POLL_SECONDS))
            except subprocess.TimeoutExpired:  # closed its output but went on running
                _stop(process)
                raise DriverError(f"{args[0]} timed out after {timeout:g} s") from None
            except BaseException:
                _stop(process)
                raise
        if process.returncode != 0:
            errors.seek(0)
            raise DriverError(f"{args[0]} failed: {errors.read().decode(errors='replace').strip()[-500:]}")
