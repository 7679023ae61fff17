"""Services of dws-snapshots."""
