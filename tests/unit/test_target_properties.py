"""Properties of the target check, on random input: it never fails with anything but the
domain's refusals, a password is never accepted wherever it is put, every host of a list
counts, and a SQLite path is accepted exactly when it lands inside the allowed directory."""

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.snapshots.rules import CommandNotAccepted, SecretInCommand
from services.snapshots.targets import AllowedTargets, check_target

LIBPQ_KEYS = ["host", "port", "dbname", "user", "sslmode", "application_name",
              "connect_timeout", "password", "sslpassword", "passfile", "service", "hostaddr",
              "options", "sslrootcert", "target_session_attrs", "requirepeer"]
NASTY = st.sampled_from([
    "", "=", "'", "\\", "\x00", "\ud800", "postgresql://", "postgresql://[", "postgresql://%zz",
    "host=", "host=,,,", "port=,", "postgresql://a,b,c:1,2/db", "host='a\\' b'", "a" * 5000,
    "postgresql://u:p@h:99999/db", "dbname=postgresql://u:p@h/db", "host=/../../etc",
])
LIBPQ_CHARACTER = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # as libpq reads
VALUE = st.text(LIBPQ_CHARACTER, max_size=30)
KEY = st.sampled_from(LIBPQ_KEYS) | st.text(max_size=10)
REFUSALS = {"secret_in_command", "target_not_allowed", "invalid_command"}
SECRET = st.text(LIBPQ_CHARACTER, max_size=20).map(lambda s: "Zq9" + s)  # a marker to look for


def quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def key_value(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{key}={quoted(value)}" for key, value in pairs)


def url(pairs: list[tuple[str, str]], userinfo: str = "", hosts: str = "localhost") -> str:
    query = "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs)
    return f"postgresql://{userinfo}{hosts}/warehouse" + (f"?{query}" if query else "")


PAIRS = st.lists(st.tuples(KEY, VALUE), max_size=5)
CONNINFO = st.one_of(NASTY, st.text(max_size=200), PAIRS.map(key_value), PAIRS.map(url),
                     st.builds(url, PAIRS, VALUE.map(lambda v: quote(v, safe=":") + "@"), VALUE))
SETTINGS = st.sampled_from([None, "*", "db.internal:5432", "/srv,[::1]"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@given(st.sampled_from(["postgres", "sqlite"]), CONNINFO, SETTINGS)
def test_any_target_is_accepted_unchanged_or_refused_with_a_spec_code(data_dir, driver, target, setting):
    allowed = AllowedTargets.parse(setting, data_dir)
    try:
        assert check_target(driver, target, allowed) == target
    except CommandNotAccepted as refused:
        assert refused.code in REFUSALS


SAFE_PAIRS = st.lists(st.tuples(st.sampled_from(["dbname", "user", "application_name", "sslmode"]),
                                VALUE), max_size=4)


@st.composite
def with_password(draw) -> tuple[str, str]:
    """A password put anywhere: a key=value pair, a URL's userinfo or query, a nested dbname."""
    secret, pairs = draw(SECRET), draw(SAFE_PAIRS)
    key = draw(st.sampled_from(["password", "sslpassword"]))
    pairs.insert(draw(st.integers(0, len(pairs))), (key, secret))
    place = draw(st.sampled_from(["key=value", "query", "userinfo", "dbname"]))
    if place == "key=value":
        return key_value(pairs), secret
    if place == "dbname":
        return key_value([("host", "localhost"), ("dbname", key_value(pairs))]), secret
    if place == "query":
        return url(pairs), secret
    return url(pairs[:-1], f"dws:{quote(secret, safe='')}@"), secret


@given(with_password(), SETTINGS)
def test_a_password_anywhere_is_never_accepted_and_never_repeated(data_dir, target_and_secret,
                                                                   setting):
    target, secret = target_and_secret
    allowed = AllowedTargets.parse(setting, data_dir)
    with pytest.raises(CommandNotAccepted) as refused:
        check_target("postgres", target, allowed)
    assert "Zq9" not in refused.value.reason


@given(with_password())
def test_a_password_is_refused_as_a_secret_even_when_every_server_is_allowed(data_dir, target_and_secret):
    with pytest.raises(SecretInCommand):
        check_target("postgres", target_and_secret[0], AllowedTargets.parse("*", data_dir))


HOSTS = st.lists(st.sampled_from(["localhost", "127.0.0.1", "/var/run/postgresql", ""])
                 | st.from_regex(r"[a-z]{1,8}\.example", fullmatch=True), min_size=1, max_size=4)


@given(HOSTS, st.booleans())
def test_a_host_list_is_refused_exactly_when_one_of_its_hosts_is_not_local(data_dir, hosts, as_url):
    listed = ",".join(hosts)
    target = url([], hosts=quote(listed, safe=",")) if as_url else key_value([("host", listed)])
    allowed = AllowedTargets.parse(None, data_dir)
    if any(host.endswith(".example") for host in hosts):
        with pytest.raises(CommandNotAccepted) as refused:
            check_target("postgres", target, allowed)
        assert refused.value.code == "target_not_allowed"
    else:
        assert check_target("postgres", target, allowed) == target


@given(st.lists(st.sampled_from(["..", ".", "a", "b", "warehouse.sqlite"]), min_size=1, max_size=6))
def test_a_sqlite_path_is_accepted_exactly_when_it_lands_inside_the_data_directory(data_dir, parts):
    target = os.path.join(data_dir, *parts)
    lands = Path(os.path.normpath(target))  # no symlinks here, so plain normalising is exact
    inside = data_dir.resolve() in lands.parents
    allowed = AllowedTargets.parse(None, data_dir)
    try:
        assert (check_target("sqlite", target, allowed), inside) == (target, True)
    except CommandNotAccepted as refused:
        assert (refused.code, inside) == ("target_not_allowed", False)
