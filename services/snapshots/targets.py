"""Checking a cluster's target before anything connects to it or opens it.

A `RegisterCluster` command names where a cluster lives: a SQLite file (`sqlite`) or a
PostgreSQL server (`postgres`). Unchecked, anyone who may send a command could make the
service open any file it can read or connect to any server it can reach, and a target
carrying a password would put that secret in the event store and on Kafka. So
`check_target` refuses, with the domain's rejection codes:

- `secret_in_command`: a password anywhere in the target (`password`, `sslpassword`, the
  password of a URL, or password-like text in a target that does not even parse);
- `target_not_allowed`: a file or server outside `SNAPSHOT_ALLOWED_TARGETS`, and the libpq
  keys that would reach around that list (`service`, `hostaddr`, `passfile`);
- `invalid_command`: a target libpq cannot parse, or one that sets any other key.

PostgreSQL targets are parsed by libpq's own parser (`conninfo_to_dict`), so the check
sees what psycopg and pg_dump will see: both the URL and the key=value form, quoting,
percent-encoding, keys repeated in a URL's query, and every host of a multi-host list.
Reasons never repeat a password: they name keys, hosts and ports only.

Host names are compared as written (IP literals normalised): a name that merely resolves to
an allowed server is refused, which errs on the side of refusing. A file's path is resolved
(symlinks, `..`) when the command is checked; a symlink swapped afterwards is not seen here.
"""

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict

from events.vocabulary import RejectionCode
from services.snapshots.rules import (CommandNotAccepted, InvalidCommand, SecretInCommand,
                                      check_no_secret)

SETTING = "SNAPSHOT_ALLOWED_TARGETS"
ACCEPTED_KEYS = frozenset({"host", "port", "dbname", "user", "sslmode", "application_name",
                           "connect_timeout"})
SECRET_KEYS = frozenset({"password", "sslpassword"})
#: Keys that would let a target reach a server or a secret the allow-list never sees.
REACHING_KEYS = {
    "service": "target must not name a service: a pg_service.conf entry can name any server "
               "and carry a password; give host, port and dbname instead",
    "hostaddr": "target must not set hostaddr: libpq connects to hostaddr instead of host, so "
                "the allowed-server check would not see where it connects; give host instead",
    "passfile": "target must not set passfile: passwords come from the service's own settings "
                "(SNAPSHOT_CLUSTER_PASSWORDS or PGPASSFILE)",
}
DEFAULT_PORT = 5432  # libpq's; a PGPORT in the service's environment is the operator's choice
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_TARGET = 4096


class TargetNotAllowed(CommandNotAccepted):
    code = RejectionCode.TARGET_NOT_ALLOWED


@dataclass(frozen=True)
class AllowedTargets:
    """Where clusters may live: directories for `sqlite` files, servers for `postgres`.

    `servers` holds (host, port) pairs; a port of None means any port."""

    directories: tuple[Path, ...] = ()
    servers: frozenset[tuple[str, int | None]] = frozenset()
    anything: bool = False
    any_socket: bool = False

    @classmethod
    def parse(cls, text: str | None, data_dir: Path) -> "AllowedTargets":
        """Read the setting: `/dir`, `host`, `host:port`, `[ipv6]:port` or `*`, comma-separated.
        Raises ValueError on an entry that is none of these (a configuration error)."""
        entries = [entry.strip() for entry in (text or "").split(",") if entry.strip()]
        if not entries:
            return cls.default(data_dir)
        directories = tuple(Path(e).resolve() for e in entries if e.startswith("/"))
        servers = frozenset(_server_entry(e) for e in entries if not e.startswith("/") and e != "*")
        return cls(directories, servers, anything="*" in entries)

    @classmethod
    def default(cls, data_dir: Path) -> "AllowedTargets":
        """The data directory, and PostgreSQL on this machine (loopback or any local socket)."""
        return cls((data_dir.resolve(),), frozenset((host, None) for host in LOCAL_HOSTS),
                   any_socket=True)

    def allows_file(self, path: Path) -> bool:
        return self.anything or any(directory in path.parents for directory in self.directories)

    def allows_server(self, host: str, port: int) -> bool:
        if self.anything:
            return True
        if host.startswith("/"):  # a socket directory: a server on this machine
            return self.any_socket or self.allows_file(_resolve(host) / f".s.PGSQL.{port}")
        # No host means libpq's default, the local socket: the operator allows it as localhost.
        name = _normal_host(host) if host else "localhost"
        return (name, None) in self.servers or (name, port) in self.servers


def check_target(driver: str, target: str, allowed: AllowedTargets) -> str:
    """The target unchanged when a cluster may live there; else a domain exception."""
    checks = {"sqlite": _check_sqlite, "postgres": _check_postgres}
    if driver not in checks:
        raise InvalidCommand(f"driver {driver[:40]!r} is not one of: sqlite, postgres")
    if not target.strip() or len(target) > MAX_TARGET:
        raise InvalidCommand(f"target must be 1 to {MAX_TARGET} characters")
    checks[driver](target, allowed)
    return target


def _check_sqlite(target: str, allowed: AllowedTargets) -> None:
    # The reason below repeats the path, so password-like text is refused first.
    check_no_secret(target)
    if not allowed.allows_file(_resolve(target)):
        raise TargetNotAllowed(
            f"sqlite file {target[:200]!r} is not under a directory allowed by {SETTING}")


def _check_postgres(target: str, allowed: AllowedTargets) -> None:
    params = _parse_conninfo(target)
    _check_keys(params)
    _check_dbname(params.get("dbname", ""))
    for host, port in _servers(params):
        if not allowed.allows_server(host, port):
            where = f"{host}:{port}" if host else f"the local socket, port {port}"
            raise TargetNotAllowed(f"PostgreSQL server {where[:200]} is not allowed by {SETTING}")


def _parse_conninfo(target: str) -> dict[str, str]:
    # libpq stops at a NUL byte, so anything after one would be stored but never checked.
    if "\x00" in target:
        _unparseable(target)
    try:
        return conninfo_to_dict(target)
    except (psycopg.Error, UnicodeError, ValueError):
        _unparseable(target)


def _unparseable(target: str) -> NoReturn:
    # libpq's own message may quote the target, password included: it is not passed on.
    check_no_secret(target)
    raise InvalidCommand("target is not a PostgreSQL connection string "
                         "(a postgresql:// URL, or key=value pairs)")


def _check_keys(params: dict[str, str]) -> None:
    secrets = sorted(SECRET_KEYS.intersection(params))
    if secrets:
        raise SecretInCommand(
            f"target must not contain {' or '.join(secrets)}; configure passwords on the "
            "service side (SNAPSHOT_CLUSTER_PASSWORDS or PGPASSFILE)")
    for key, reason in REACHING_KEYS.items():
        if key in params:
            raise TargetNotAllowed(reason)
    unknown = sorted(set(params) - ACCEPTED_KEYS)
    if unknown:
        raise InvalidCommand(f"target must not set {', '.join(unknown)}; accepted keys: "
                             f"{', '.join(sorted(ACCEPTED_KEYS))}")


def _check_dbname(dbname: str) -> None:
    # pg_dump --dbname expands a connection string given as the database name; a real
    # database name never needs one, so a nested connection string is refused outright.
    if "=" in dbname or dbname.startswith(("postgresql:", "postgres:")):
        check_no_secret(dbname)
        raise InvalidCommand("dbname must be a database name, not a connection string")


def _servers(params: dict[str, str]) -> list[tuple[str, int]]:
    """Every (host, port) libpq would try, paired as libpq pairs them."""
    hosts = params.get("host", "").split(",")
    ports = [_port(text) for text in params.get("port", "").split(",")]
    if len(ports) == 1:
        ports *= len(hosts)
    if len(ports) != len(hosts):
        raise InvalidCommand(f"target has {len(hosts)} hosts but {len(ports)} ports")
    return list(zip(hosts, ports))


def _port(text: str) -> int:
    if not text:
        return DEFAULT_PORT
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise InvalidCommand(f"port {text[:20]!r} is not a number from 1 to 65535")
    return int(text)


def _normal_host(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def _resolve(path: str) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise InvalidCommand("target is not a path that can be resolved") from None


def _server_entry(entry: str) -> tuple[str, int | None]:
    host, port = entry, None
    if entry.startswith("["):  # [ipv6] or [ipv6]:port
        host, _, rest = entry[1:].partition("]")
        port = _entry_port(entry, rest.removeprefix(":")) if rest else None
    elif entry.count(":") == 1:
        host, text = entry.split(":")
        port = _entry_port(entry, text)
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"{SETTING}: {entry!r} is not /dir, host, host:port or *")
    return _normal_host(host), port


def _entry_port(entry: str, text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ValueError(f"{SETTING}: {entry!r} has no port from 1 to 65535")
    return int(text)
