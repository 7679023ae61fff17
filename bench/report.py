"""Printing and keeping benchmark figures (bench/results.json)."""

import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


class Report:
    def __init__(self):
        self.figures: dict[str, dict] = {}
        self.machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    def add(self, name: str, **values) -> None:
        self.figures[name] = values
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        print(f"  {name}: {shown}", flush=True)
        self.save()  # as we go: a later failure must not lose the figures already measured

    def save(self) -> None:
        existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        existing.update({"machine": self.machine, **self.figures})
        RESULTS.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def percentiles(samples: list[float]) -> dict:
    if len(samples) < 2:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "n": len(samples)}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p95_ms": cuts[94] * 1000, "p99_ms": cuts[98] * 1000, "n": len(samples)}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
