"""`python -m services.snapshots ...` is `snapshotctl ...`."""

from services.snapshots.cli import main

main()
