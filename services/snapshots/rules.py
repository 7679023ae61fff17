"""The seed's rules as `check_*` functions, and the domain exceptions that carry the SPEC
rejection codes. Standard library only (and the published vocabulary, itself stdlib)."""

import re
from urllib.parse import parse_qs, urlsplit

from events.vocabulary import RejectionCode

SNAPSHOT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{3,63}")
CLUSTER_NAME = SNAPSHOT_NAME
FORBIDDEN_IN_DESCRIPTION = set("!<>'=&\"")
MAX_DESCRIPTION = 256


def check_snapshot_name(name: str) -> None:
    if not SNAPSHOT_NAME.fullmatch(name):
        raise InvalidSnapshotName(
            f"snapshot name {name[:80]!r} must be 4 to 64 characters, start with a letter "
            "and contain only letters, digits, '-' and '_'")


def check_cluster_name(name: str) -> None:
    if not CLUSTER_NAME.fullmatch(name):
        raise InvalidCommand(
            f"cluster name {name[:80]!r} must be 4 to 64 characters, start with a letter "
            "and contain only letters, digits, '-' and '_'")


def check_no_secret(target: str) -> None:
    """Secrets live in service-side settings; a command or event must never carry one."""
    try:
        url = urlsplit(target)
        has_password = bool(url.password) or "password" in parse_qs(url.query)
    except ValueError:
        has_password = False
    if has_password or re.search(r"password\s*=", target, re.IGNORECASE):
        raise SecretInCommand(
            "target must not contain a password; configure it on the service side "
            "(SNAPSHOT_POSTGRES_PASSWORD or PGPASSFILE)")


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidDescription(
            f"description has {len(description)} characters; at most {MAX_DESCRIPTION}")
    forbidden = sorted(FORBIDDEN_IN_DESCRIPTION.intersection(description))
    if forbidden:
        raise InvalidDescription(
            "description must not contain " + " ".join(forbidden))
    hidden = sorted({f"U+{ord(ch):04X}" for ch in description if _is_control(ch)})
    if hidden:
        raise InvalidDescription(
            "description must not contain control or bidirectional-override characters: "
            + " ".join(hidden[:5]))


#: Bidirectional embeddings, overrides and isolates: they make text read other than it is.
BIDI_CONTROLS = set(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


def _is_control(ch: str) -> bool:
    """C0 and C1 control characters (and DEL), and the bidi controls."""
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in BIDI_CONTROLS


class CommandNotAccepted(Exception):
    """A rule refused a command; `code` is the SPEC rejection code."""

    code = RejectionCode.INVALID_COMMAND

    @property
    def reason(self) -> str:
        return str(self)


class InvalidCommand(CommandNotAccepted):
    code = RejectionCode.INVALID_COMMAND


class InvalidSnapshotName(CommandNotAccepted):
    code = RejectionCode.INVALID_SNAPSHOT_NAME


class InvalidDescription(CommandNotAccepted):
    code = RejectionCode.INVALID_DESCRIPTION


class DuplicateSnapshotName(CommandNotAccepted):
    code = RejectionCode.DUPLICATE_SNAPSHOT_NAME


class DuplicateClusterName(CommandNotAccepted):
    code = RejectionCode.DUPLICATE_CLUSTER_NAME


class UnknownCluster(CommandNotAccepted):
    code = RejectionCode.UNKNOWN_CLUSTER


class UnknownSnapshot(CommandNotAccepted):
    code = RejectionCode.UNKNOWN_SNAPSHOT


class ClusterNotReady(CommandNotAccepted):
    code = RejectionCode.CLUSTER_NOT_READY


class SnapshotInProgress(CommandNotAccepted):
    code = RejectionCode.SNAPSHOT_IN_PROGRESS


class SecretInCommand(CommandNotAccepted):
    code = RejectionCode.SECRET_IN_COMMAND


class SnapshotNotAvailable(CommandNotAccepted):
    code = RejectionCode.SNAPSHOT_NOT_AVAILABLE


class SnapshotBusy(CommandNotAccepted):
    code = RejectionCode.SNAPSHOT_BUSY


class InvalidPolicy(CommandNotAccepted):
    code = RejectionCode.INVALID_POLICY


class SnapshotAutomated(CommandNotAccepted):
    code = RejectionCode.SNAPSHOT_AUTOMATED


class SnapshotNotCreating(CommandNotAccepted):
    code = RejectionCode.SNAPSHOT_NOT_CREATING
