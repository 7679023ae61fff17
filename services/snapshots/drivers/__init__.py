"""Cluster drivers: what it means to freeze a cluster and copy it, per kind of cluster.

A driver is one small protocol (`ClusterDriver` in `base`); the domain never sees one."""

from services.snapshots.drivers.base import ClusterDriver, DriverError, FrozenCluster, SnapshotFiles
from services.snapshots.drivers.sqlite import SQLiteDriver

__all__ = ["ClusterDriver", "DriverError", "FrozenCluster", "SnapshotFiles", "SQLiteDriver"]
