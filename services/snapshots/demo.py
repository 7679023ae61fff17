"""The demo warehouse `dws-demo`: a SQLite file with a little sample data to snapshot."""

import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

REGIONS = ("north", "south", "east", "west")


def create_demo_warehouse(path: Path, customers: int = 1000, sales: int = 20000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL)")
        db.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL "
                   "REFERENCES customers(id), sold_on TEXT NOT NULL, amount_cents INTEGER NOT NULL)")
        db.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                       ((i, f"customer-{i:05d}", rng.choice(REGIONS)) for i in range(1, customers + 1)))
        start = date(2026, 1, 1)
        db.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)",
                       ((i, rng.randint(1, customers), (start + timedelta(days=rng.randint(0, 300))).isoformat(),
                         rng.randint(100, 500_000)) for i in range(1, sales + 1)))
    db.close()


DEMO_CLUSTER = "dws-demo"


def ensure_demo_warehouse(clusters_dir: Path) -> Path:
    """The demo warehouse's file under `clusters_dir`, created with sample data once."""
    path = clusters_dir / f"{DEMO_CLUSTER}.sqlite"
    if not path.exists():
        create_demo_warehouse(path)
    return path.resolve()
