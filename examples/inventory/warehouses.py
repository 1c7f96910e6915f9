"""Ten warehouse databases made from a seed, and the aggregator that totals stock per SKU.

Each warehouse is its own SQLite file with realistic tables (products, bins, stock,
reservations) and a view ``stock_by_sku`` (on hand and reserved per SKU).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import forkjoin as fj

CATALOGUE = [
    ("SKU-1001", "Cordless drill 18V", "tools", 89.0),
    ("SKU-1002", "Impact driver", "tools", 119.0),
    ("SKU-1003", "Circular saw", "tools", 139.0),
    ("SKU-1004", "Spirit level 60cm", "tools", 24.5),
    ("SKU-2001", "LED bulb E27 (4-pack)", "electrical", 12.9),
    ("SKU-2002", "Extension cord 10m", "electrical", 18.0),
    ("SKU-2003", "Smart plug", "electrical", 21.0),
    ("SKU-3001", "Wood screws 4x40 (200)", "fixings", 7.5),
    ("SKU-3002", "Wall plugs 6mm (100)", "fixings", 4.2),
    ("SKU-3003", "Hinge 75mm (pair)", "fixings", 6.8),
    ("SKU-4001", "Interior paint white 5L", "paint", 39.0),
    ("SKU-4002", "Paint roller set", "paint", 14.5),
    ("SKU-4003", "Masking tape 50m", "paint", 5.9),
    ("SKU-5001", "Garden hose 25m", "garden", 32.0),
    ("SKU-5002", "Pruning shears", "garden", 17.5),
]
SCHEMA = """
CREATE TABLE products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                       unit_price REAL NOT NULL);
CREATE TABLE bins (bin_id TEXT PRIMARY KEY, aisle INTEGER NOT NULL, shelf INTEGER NOT NULL);
CREATE TABLE stock (sku TEXT NOT NULL REFERENCES products(sku),
                    bin_id TEXT NOT NULL REFERENCES bins(bin_id),
                    qty INTEGER NOT NULL CHECK (qty >= 0), updated_at TEXT NOT NULL,
                    PRIMARY KEY (sku, bin_id));
CREATE TABLE reservations (order_id TEXT NOT NULL, sku TEXT NOT NULL REFERENCES products(sku),
                           qty INTEGER NOT NULL CHECK (qty > 0));
CREATE VIEW stock_by_sku AS
  SELECT p.sku, p.name, p.category, SUM(s.qty) AS on_hand,
         COALESCE((SELECT SUM(r.qty) FROM reservations r WHERE r.sku = p.sku), 0) AS reserved
  FROM products p JOIN stock s ON s.sku = p.sku
  GROUP BY p.sku ORDER BY p.sku;
"""


def create(folder: Path, seed: int = 7, count: int = 10) -> list[Path]:
    """Create ``count`` warehouse databases in ``folder`` (the same seed, the same data)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for w in range(1, count + 1):
        path = folder / f"wh{w:02d}.db"
        path.unlink(missing_ok=True)
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.executescript(SCHEMA)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", CATALOGUE)
            bins = [(f"A{a}-{s}", a, s) for a in range(1, 5) for s in range(1, 4)]
            conn.executemany("INSERT INTO bins VALUES (?, ?, ?)", bins)
            for sku, *_ in rng.sample(CATALOGUE, k=rng.randint(9, len(CATALOGUE))):
                for bin_id, *_ in rng.sample(bins, k=rng.randint(1, 3)):
                    day = rng.randint(1, 28)
                    conn.execute(
                        "INSERT INTO stock VALUES (?, ?, ?, ?)",
                        (sku, bin_id, rng.randint(0, 120), f"2026-11-{day:02d}"),
                    )
                if rng.random() < 0.4:
                    conn.execute(
                        "INSERT INTO reservations VALUES (?, ?, ?)",
                        (f"ORD-{w}{rng.randint(1000, 9999)}", sku, rng.randint(1, 10)),
                    )
        made.append(path)
    return made


@contextmanager
def warehouses(seed: int = 7, count: int = 10, data_dir: str = "") -> Iterator[dict[str, str]]:
    """Create the warehouses (in a temporary folder unless one is given) for a run."""
    if data_dir:
        create(Path(data_dir), seed, count)
        yield {"data_dir": data_dir}
        return
    folder = Path(tempfile.mkdtemp(prefix="forkjoin-warehouses-"))
    try:
        create(folder, seed, count)
        yield {"data_dir": str(folder)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def total_stock(results: fj.Results) -> dict[str, Any]:
    """The aggregator: stock per SKU over every warehouse that answered."""
    per_sku: dict[str, dict[str, Any]] = {}
    for warehouse, rows in results.ok_values().items():
        for row in rows:
            entry = per_sku.setdefault(
                row["sku"],
                {"name": row["name"], "on_hand": 0, "reserved": 0, "warehouses": []},
            )
            entry["on_hand"] += row["on_hand"]
            entry["reserved"] += row["reserved"]
            entry["warehouses"].append(warehouse)
    for entry in per_sku.values():
        entry["available"] = entry["on_hand"] - entry["reserved"]
    return {
        "per_sku": dict(sorted(per_sku.items())),
        "units_available": sum(e["available"] for e in per_sku.values()),
        "warehouses_answered": len(results.ok_values()),
        "warehouses_missing": sorted(results.failures()),
    }
