"""BENCHMARK DRIVER - copies nothing. Used only when SNAPSHOT_BENCHMARK_DRIVER=true, so
that `bench/` measures the control plane (commands, store, relay, projection) and not
the cost of copying data. Every snapshot it "takes" is empty; never enable it in service."""

from pathlib import Path

from services.snapshots.drivers.base import SnapshotFiles


class NothingFrozen:
    def copy_to(self, directory: Path) -> SnapshotFiles:
        return SnapshotFiles(directory=directory, size_bytes=0, sha256="", warning=None)

    def release(self) -> None:
        pass


class BenchmarkDriver:
    name = "benchmark"

    def freeze(self, target: str) -> NothingFrozen:
        return NothingFrozen()

    def restore(self, directory: Path, source_target: str, new_cluster_name: str,
                expected_sha256: str | None = None) -> str:
        return source_target
