"""Benchmarks of dws-snapshots (`make bench`). They print figures and their ratio to a raw
baseline measured in the same run on the same machine; they never pass or fail on time."""
