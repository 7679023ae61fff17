"""Cluster drivers: what it means to freeze a cluster, copy it and let it go, per kind of
cluster.

A driver is one small protocol (`ClusterDriver` in `base`); the domain never sees one."""

from services.snapshots.drivers.base import (CleanupPending, ClusterDriver, CopyCancelled, DriverError,
                                             FrozenCluster, Progress, SnapshotFiles)
from services.snapshots.drivers.sqlite import SQLiteDriver

__all__ = ["CleanupPending", "ClusterDriver", "CopyCancelled", "DriverError", "FrozenCluster", "Progress",
           "SnapshotFiles", "SQLiteDriver"]
