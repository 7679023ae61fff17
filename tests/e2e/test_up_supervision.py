"""`snapshotctl up` supervises its parts: they die with it whatever kills it, a part that
dies alone comes back, and one data directory has one `up` at a time."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from services.snapshots.broker import is_listening
from tests.e2e.system import ROOT
from tests.e2e.up_process import Up, parts_of, wait_for


@pytest.fixture(scope="module")
def running_up(tmp_path_factory):
    up = Up(tmp_path_factory.mktemp("supervised") / "data").start()
    try:
        yield up.wait_until_serving()
    finally:
        up.stop()


def test_a_second_up_on_the_same_data_directory_is_refused_naming_the_running_one(running_up):
    second = running_up.run_another()

    assert second.returncode != 0
    assert second.stderr.strip() == (f"snapshotctl: snapshotctl up (pid {running_up.process.pid}) is "
                                     f"already running on {running_up.data_dir}; stop it first")
    assert running_up.pid_file()["up"]["pid"] == running_up.process.pid
    assert running_up.serves_the_demo_cluster()


def test_a_part_killed_with_sigkill_is_restarted_and_the_log_names_its_death_and_restart(running_up):
    killed = running_up.child_pid("api")
    os.kill(killed, signal.SIGKILL)

    restarted = wait_for(lambda: running_up.child_pid("api") not in (None, killed)
                         and running_up.child_pid("api"), 60, "a new api in the pid file")
    wait_for(running_up.serves_the_demo_cluster, 60, "the restarted API to answer")
    log = running_up.log()
    assert f"api (pid {killed}) exited with signal SIGKILL (exit code -9)" in log
    assert f"restarted api (pid {restarted}), restart 1 in a row" in log


def test_kill_9_of_up_takes_its_parts_and_ports_along_and_a_new_up_serves_the_same_data(tmp_path):
    first = Up(tmp_path / "data").start().wait_until_serving()
    assert len(parts_of(first.data_dir)) == 3

    first.kill()

    wait_for(lambda: not parts_of(first.data_dir), 30, "the parts to die with up")
    assert not is_listening(first.kafka), "the embedded broker outlived up"
    assert not is_listening(f"127.0.0.1:{first.http_port}"), "the API outlived up"
    second = Up(first.data_dir, first.kafka, first.http_port).start()
    try:
        second.wait_until_serving()
        assert "replacing the stale pid file" in second.log()
    finally:
        assert second.stop() == 0
    assert not (first.data_dir / "up.pid").exists()


def orphaned_part(part: str, env: dict) -> psutil.Process:
    """A part as an `up` from before the pid file left it: its own session, no parent."""
    # Its output goes nowhere: a pipe of ours would keep subprocess.run waiting for its end.
    starter = ("import subprocess, sys; print(subprocess.Popen([sys.executable, '-m', "
               f"'services.snapshots', '{part}'], start_new_session=True, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    started = subprocess.run([sys.executable, "-c", starter], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
    return psutil.Process(int(started.stdout))


def test_parts_an_earlier_up_left_running_are_stopped_and_named_in_the_log(tmp_path):
    up = Up(tmp_path / "data", up_stop_grace_seconds="2")
    up.data_dir.mkdir()
    old_api, frozen = orphaned_part("api", up.env), None
    try:
        wait_for(lambda: up.get("/health/live").status_code == 200, 60, "the old API to answer")
        frozen = orphaned_part("projection", up.env)
        frozen.suspend()  # SIGSTOP: it cannot act on SIGTERM, as a part hung in shutdown
        up.start()
        up.wait_until_serving()
        assert not old_api.is_running() and not frozen.is_running()
        log = up.log()
        assert f"stopping api (pid {old_api.pid}) left running by an earlier snapshotctl up" in log
        assert f"stopping projection (pid {frozen.pid})" in log
        assert f"killing pid {frozen.pid}: it ignored SIGTERM" in log
        assert up.child_pid("api") != old_api.pid
    finally:
        up.stop()
        for leftover in (old_api, frozen):
            if leftover is not None and leftover.is_running():
                leftover.kill()
