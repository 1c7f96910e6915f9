"""Check inventory across ten warehouses at once, in Python.

    python examples/inventory/inventory.py [--category tools]

Ten SQLite databases (created from a seed) are queried concurrently (sync sqlite3 calls run
in worker threads); the aggregator totals stock per SKU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import forkjoin as fj

sys.path.insert(0, str(Path(__file__).resolve().parent))
import warehouses

QUERY = "SELECT * FROM stock_by_sku WHERE :category = '' OR category = :category"


def query(path: str, category: str) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(QUERY, {"category": category})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with warehouses.warehouses(seed=args.seed) as made:
        folder = Path(made["data_dir"])
        results = fj.run(
            {db.stem: (query, str(db), args.category) for db in sorted(folder.glob("wh*.db"))},
            limit=10,
            timeout=5,
        )
    print(json.dumps(warehouses.total_stock(results), indent=2))
    print(results.report, file=sys.stderr)
    sys.exit(0 if results.all_ok else 1)


if __name__ == "__main__":
    main()
