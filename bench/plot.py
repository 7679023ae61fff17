"""bench/latency.png: latency percentiles against load, per event store."""

from pathlib import Path

from bench.report import Report

PNG = Path(__file__).resolve().parent / "latency.png"


def latency_png(report: Report) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple, list] = {}
    for name, figures in report.figures.items():
        if not name.startswith("latency["):
            continue
        store, rate = name[len("latency["):].split("]@")
        for target in ("to_unlocked", "to_view"):
            for p in ("p50_ms", "p95_ms", "p99_ms"):
                series.setdefault((store, target, p), []).append((int(rate.rstrip("/s")), figures[target][p]))
    if not series:
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, target in zip(axes, ("to_unlocked", "to_view")):
        for (store, tgt, p), points in sorted(series.items()):
            if tgt != target:
                continue
            points.sort()
            axis.plot([x for x, _ in points], [y for _, y in points], marker="o",
                      linestyle="-" if store == "sqlite" else "--", label=f"{store} {p[:3]}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("load (CreateSnapshotRequested per second)")
        axis.set_title("command → ClusterUnlocked on Kafka" if target == "to_unlocked" else "command → Available in /snapshots")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].legend(fontsize=8)
    figure.suptitle(f"dws-snapshots latency, {report.machine['cpus']} cores, {report.machine['when']}")
    figure.tight_layout()
    figure.savefig(PNG, dpi=110)
    print(f"  wrote {PNG}")
