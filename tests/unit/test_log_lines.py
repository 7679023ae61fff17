"""Log lines: JSON off a terminal, text on one, and the command's fields on every line
written while handling it, in tasks and store threads started from there too."""

import asyncio
import io
import json
import logging
import os

from services.snapshots import logs
from services.snapshots.threads import ThreadPool


def capture(log_format: str, stream) -> logging.Logger:
    """A logger writing through the part's configuration (logs.dict_config) to `stream`."""
    config = logs.dict_config(log_format, "service")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(config["formatters"]["line"]["()"]())
    handler.addFilter(logs.ContextFilter("service"))
    logger = logging.getLogger(f"test.{log_format}.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger


def test_off_a_terminal_each_line_is_one_json_object_with_the_commands_fields():
    stream = io.StringIO()
    assert logs.use_json("auto", stream)  # a file, a pipe: not a terminal
    log = capture("json", stream)
    with logs.bound(command_id="cmd-1", correlation_id="cmd-1", cluster="dws-one", snapshot=None):
        log.info("command %s accepted", "cmd-1")
    log.info("relayed 2 events", extra={"command_ids": ["cmd-1", "cmd-2"]})

    first, second = map(json.loads, stream.getvalue().splitlines())
    assert first["message"] == "command cmd-1 accepted" and first["part"] == "service"
    assert (first["command_id"], first["correlation_id"], first["cluster"]) == ("cmd-1", "cmd-1", "dws-one")
    assert "snapshot" not in first and "command_id" not in second
    assert second["command_ids"] == ["cmd-1", "cmd-2"]


def test_on_a_terminal_lines_are_text_ending_with_the_commands_fields():
    primary, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal, os.fdopen(primary, "rb", buffering=0) as screen:
        assert not logs.use_json("auto", terminal)
        log = capture("text", terminal)
        with logs.bound(command_id="cmd-1", cluster="dws-one"):
            log.warning("thaw of %s failed", "dws-one")
        terminal.flush()
        line = screen.read(4096).decode()
    assert "WARNING service" in line and "thaw of dws-one failed [command_id=cmd-1 cluster=dws-one]" in line


def test_a_control_character_in_a_message_never_reaches_the_log_raw():
    stream = io.StringIO()
    capture("json", stream).warning("undecodable command: %s", "\x1b[2J\u202egnp.exe")
    line = stream.getvalue()
    assert "\x1b" not in line and "\u202e" not in line
    assert json.loads(line)["message"] == "undecodable command: \x1b[2J\u202egnp.exe"


async def test_tasks_and_store_threads_started_while_handling_a_command_carry_it():
    stream = io.StringIO()
    log = capture("json", stream)
    store = ThreadPool(1, "store")

    async def workflow() -> None:
        await store.run(log.info, "saved in a store thread")
    with logs.bound(command_id="cmd-7", cluster="dws-one"):
        task = asyncio.create_task(workflow())
    log.info("next command")  # the binding ended with its block
    await task

    lines = {line["message"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["saved in a store thread"]["command_id"] == "cmd-7"
    assert "command_id" not in lines["next command"]
