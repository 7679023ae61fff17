"""BENCHMARK DRIVER - copies nothing. Used only when SNAPSHOT_BENCHMARK_DRIVER=true, so
that `bench/` measures the control plane (commands, store, relay, projection) and not
the cost of copying data. Every snapshot it "takes" is empty; never enable it in service.
It freezes nothing either, so thawing and cleaning up are no-ops."""

import threading
from pathlib import Path

from services.snapshots.drivers.base import Progress, SnapshotFiles


class NothingFrozen:
    """The handle of a freeze that did nothing."""

    def copy_to(self, directory: Path, cancel: threading.Event | None = None,
                progress: Progress | None = None) -> SnapshotFiles:
        return SnapshotFiles(directory=directory, size_bytes=0, sha256="", warning=None)

    def copy_online(self, directory: Path, cancel: threading.Event | None, pinned,
                    progress: Progress | None = None) -> SnapshotFiles:
        pinned()
        return self.copy_to(directory, cancel, progress)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


class BenchmarkDriver:
    """Stands in for every driver in benchmark runs."""

    name = "benchmark"

    def freeze(self, target: str) -> NothingFrozen:
        return NothingFrozen()

    def thaw(self, target: str) -> None:
        pass

    def cleanup(self, target: str) -> None:
        pass

    def is_frozen(self, target: str) -> bool:
        return False

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        return source_target
