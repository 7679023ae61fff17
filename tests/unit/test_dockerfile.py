"""The Dockerfile cannot be built here (no Docker engine): check it statically.

The image runs the `postgres` driver, which calls `pg_dump` and `pg_restore`: they must be
in the image, and of the major version of the PostgreSQL server in docker-compose.yml
(pg_dump refuses a server newer than itself)."""

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    if pending:
        keyword, _, arguments = pending.strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage, its FROM first: that is the image shipped."""
    parsed = instructions((ROOT / "Dockerfile").read_text())
    start = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[start:]


def shell_commands(run: str) -> list[list[str]]:
    """The commands of a shell-form RUN, split at && ; and |, each as its words."""
    words = shlex.split(run, comments=True)
    commands, current = [], []
    for word in words:
        if word in ("&&", ";", "||", "|"):
            commands.append(current)
            current = []
        elif word.endswith(";"):
            current.append(word[:-1])
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [command for command in commands if command]


def compose_postgres_major() -> int:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = [s["image"] for s in services.values()
              if s.get("image", "").split(":")[0].split("/")[-1] == "postgres"]
    assert len(images) == 1, f"expected one postgres service in docker-compose.yml, found {images}"
    repository, _, tag = images[0].partition(":")
    major = re.match(r"\d+", tag)
    assert major, f"the postgres image {images[0]!r} has no version tag to match the client tools to"
    return int(major.group())


def is_apt_get(command: list[str], action: str) -> bool:
    return len(command) >= 2 and command[0] == "apt-get" and action in command[1:]


def test_the_base_image_is_python_3_11_slim_on_debian_bookworm():
    keyword, image = final_stage()[0]
    image = image.split(" AS ")[0].split(" as ")[0].strip()
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image), (
        f"FROM {image}: pin python:3.11-slim-bookworm, so that Debian's postgresql-client-<N> exists")


def test_the_compose_servers_major_version_is_read_from_its_image_tag():
    assert compose_postgres_major() == 15


def test_the_image_installs_the_postgresql_client_tools_of_the_compose_servers_major_version():
    package = f"postgresql-client-{compose_postgres_major()}"
    runs = [shell_commands(arguments) for keyword, arguments in final_stage() if keyword == "RUN"]
    installing = [(commands, command) for commands in runs for command in commands
                  if is_apt_get(command, "install") and package in command]
    assert installing, f"no RUN apt-get install {package} (pg_dump/pg_restore for the postgres driver)"
    commands, install = installing[0]
    assert "-y" in install or "--yes" in install or "-qy" in install, "apt-get install must not prompt"
    assert "--no-install-recommends" in install
    position = commands.index(install)
    assert any(is_apt_get(c, "update") for c in commands[:position]), (
        "apt-get update belongs in the same RUN as the install (a cached update layer goes stale)")


def test_the_apt_lists_are_removed_in_the_run_that_fetched_them():
    for keyword, arguments in final_stage():
        if keyword != "RUN":
            continue
        commands = shell_commands(arguments)
        updates = [i for i, c in enumerate(commands) if is_apt_get(c, "update")]
        if not updates:
            continue
        cleaned = [i for i, c in enumerate(commands)
                   if c[:1] == ["rm"] and any(w.startswith("/var/lib/apt/lists") for w in c)]
        assert cleaned and max(cleaned) > max(updates), (
            f"RUN {arguments}: remove /var/lib/apt/lists/* at its end, or the layer keeps them")
        break
    else:
        raise AssertionError("no RUN runs apt-get update")


def test_the_entrypoint_is_snapshotctl_in_exec_form():
    entrypoints = [arguments for keyword, arguments in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["snapshotctl"], (
        "exec form, so that snapshotctl is PID 1 and gets docker stop's SIGTERM")


def test_the_parser_joins_continuations_and_drops_comments():
    parsed = instructions("# c\nFROM x AS y\nRUN a \\\n  # inside\n  && b\nentrypoint [\"e\"]\n")
    assert parsed == [("FROM", "x AS y"), ("RUN", "a && b"), ("ENTRYPOINT", '["e"]')]
    assert shell_commands("apt-get update && apt-get install -y p; rm -rf /var/lib/apt/lists/*") == [
        ["apt-get", "update"], ["apt-get", "install", "-y", "p"], ["rm", "-rf", "/var/lib/apt/lists/*"]]
