"""The example scenarios, end to end: each TOML spec through `forkjoin run` and each
Python version, on embedded defaults (local servers the examples start themselves)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import _common  # noqa: E402


def forkjoin(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "forkjoin", *args],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
    )  # fmt: skip


def results_of(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


@pytest.fixture(scope="module")
def llm() -> Iterator[dict[str, Any]]:
    """A local OpenAI-compatible stand-in started by the test; counts its calls."""
    route = _common.chat_route(latency=0.01)
    seen: list[str] = []

    def counting(method: str, path: str, body: Any) -> tuple[int, Any]:
        seen.append(path)
        return route(method, path, body)

    with _common.serve(counting) as url:
        yield {"url": f"{url}/v1", "seen": seen}


# 1. document analysis ----------------------------------------------------------------------


def test_documents_offline_spec_and_python() -> None:
    r = forkjoin("run", "examples/documents/spec.toml")
    assert r.returncode == 0, r.stderr
    doc = results_of(r)
    assert list(doc["results"]) == ["sentiment", "entities", "key_phrases", "summary"]
    analysis = doc["aggregate"]["analysis"]
    assert analysis["sentiment"]["label"] == "positive"
    assert {"University of Cambridge", "DeepMind", "Allen Institute"} <= set(analysis["entities"])
    assert len(analysis["key_phrases"]) == 5
    assert "small language models" in analysis["summary"]
    assert "speedup" in r.stderr  # the report
    p = python("documents/analyze.py")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["entities"] == analysis["entities"]


def test_documents_llm_path(llm: dict[str, Any]) -> None:
    before = len(llm["seen"])
    r = forkjoin(
        "run", "examples/documents/spec-llm.toml", "--var", f"llm_base_url={llm['url']}",
        "--var", "api_key=${env:FJ_EXAMPLE_KEY}", env={"FJ_EXAMPLE_KEY": "sk-example-secret"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(llm["seen"]) - before == 4  # four calls went to the endpoint given
    assert all(p == "/v1/chat/completions" for p in llm["seen"])
    analysis = results_of(r)["aggregate"]["analysis"]
    assert analysis["sentiment"] == "positive"
    assert "DeepMind" in analysis["entities"]
    assert "sk-example-secret" not in r.stdout + r.stderr
    # the Python version through the same endpoint
    p = python("documents/analyze.py", "--llm-base-url", llm["url"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sentiment"] == "positive"
    assert len(llm["seen"]) - before == 8


def test_documents_llm_spec_starts_its_own_stand_in() -> None:
    r = forkjoin("run", "examples/documents/spec-llm.toml", "--quiet")
    assert r.returncode == 0, r.stderr
    assert results_of(r)["aggregate"]["missing"] == []


# 2. search three engines ---------------------------------------------------------------------


def test_search_partial_results_timeout_and_hedging() -> None:
    r = forkjoin("run", "examples/search/spec.toml")
    assert r.returncode == 1, r.stderr  # one engine hangs: partial results
    res = results_of(r)["results"]
    assert res["google"]["status"] == "ok"
    assert res["bing"]["status"] == "ok"
    assert res["bing"]["duration"] < 1.5  # the hedged duplicate answered, not the 2 s call
    assert res["duckduckgo"]["status"] == "timed_out"
    assert results_of(r)["aggregate"]["answered"] == ["bing", "google"]
    p = python("search/search.py")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["not_answered"] == {"duckduckgo": "timed_out"}


def test_two_phase_search_reads_every_page_as_soon_as_its_engine_answered(
    tmp_path: Path,
) -> None:
    saved = tmp_path / "report.json"
    r = forkjoin("run", "examples/search/deep-spec.toml", "--report-json", str(saved))
    assert r.returncode == 1, r.stderr  # duckduckgo hangs: partial results
    doc = results_of(r)
    res = doc["results"]
    for engine in ("google", "bing"):
        assert res[f"{engine}_pages"]["status"] == "ok"
        assert [res[f"{engine}_pages/{i}"]["status"] for i in range(3)] == ["ok"] * 3
        pages = doc["aggregate"]["pages"][engine]
        assert [p["title"] for p in pages] == [
            f"noise cancelling headphones — page {i} from {engine}" for i in range(3)
        ]
    assert res["duckduckgo"]["status"] == "timed_out"
    assert res["duckduckgo_pages"]["status"] == "skipped"
    assert res["duckduckgo_pages"]["reason"] == "dependency"
    assert not [n for n in res if n.startswith("duckduckgo_pages/")]  # nothing to read
    assert doc["aggregate"]["not_ok"] == {"duckduckgo": "timeout", "duckduckgo_pages": "dependency"}
    rows = {row["name"]: row for row in json.loads(saved.read_text())["rows"]}
    for engine in ("google", "bing"):
        for i in range(3):
            page = rows[f"{engine}_pages/{i}"]
            assert page["after"] == [engine]  # each page waited for its own engine only
            assert page["started"] >= rows[engine]["ended"]
    # so google's pages were read while the hanging engine was still being waited for
    assert max(rows[f"google_pages/{i}"]["ended"] for i in range(3)) < rows["duckduckgo"]["ended"]
    assert "critical path" in r.stderr

    p = python("search/deep_search.py")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert sorted(out["pages"]) == ["bing", "google"]
    assert out["words"] == sum(page["words"] for ps in out["pages"].values() for page in ps)
    assert out["not_ok"] == {"duckduckgo": "timeout", "duckduckgo_pages": "dependency"}


# 3. translation --------------------------------------------------------------------------------


def test_translate_spec_and_python(llm: dict[str, Any]) -> None:
    r = forkjoin("run", "examples/translate/spec.toml", "--var", f"llm_base_url={llm['url']}",
                 "--var", "text=Hello my friend")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert results_of(r)["aggregate"]["translations"] == {
        "spanish": "Hola mi amigo",
        "french": "Bonjour mon ami",
        "german": "Hallo mein Freund",
    }
    p = python("translate/translate.py", "Thank you, friend", "--llm-base-url", llm["url"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {
        "spanish": "Gracias, amigo",
        "french": "Merci, ami",
        "german": "Danke, Freund",
    }


# 4. inventory across ten warehouses -----------------------------------------------------------


def test_inventory_totals_per_sku(tmp_path: Path) -> None:
    r = forkjoin("run", "examples/inventory/spec.toml")
    assert r.returncode == 0, r.stderr
    doc = results_of(r)
    assert list(doc["results"]) == [f"wh{i:02d}" for i in range(1, 11)]
    total = doc["aggregate"]
    assert total["warehouses_answered"] == 10
    # the same totals, computed straight from the databases the seed makes
    sys.path.insert(0, str(EXAMPLES / "inventory"))
    import warehouses

    expected: dict[str, int] = {}
    for db in warehouses.create(tmp_path, seed=7):
        with sqlite3.connect(db) as conn:
            for sku, qty in conn.execute("SELECT sku, SUM(qty) FROM stock GROUP BY sku"):
                expected[sku] = expected.get(sku, 0) + qty
    assert {s: e["on_hand"] for s, e in total["per_sku"].items()} == expected
    # the Python version agrees, and a category filter is a parameter, not SQL text
    p = python("inventory/inventory.py")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["per_sku"] == total["per_sku"]
    tools = forkjoin("run", "examples/inventory/spec.toml", "--var", "category=tools")
    assert set(results_of(tools)["aggregate"]["per_sku"]) == {
        s for s in expected if s.startswith("SKU-1")
    }


# 5. research with costs and a budget ---------------------------------------------------------


def test_research_cost_budget_and_report() -> None:
    r = forkjoin("run", "examples/research/spec.toml")
    res = results_of(r)["results"]
    # a broken source and one skipped for the budget, and still exit 0: the spec allows
    # partial results (a first-time user must not read the quick start as broken)
    assert r.returncode == 0, r.stderr
    assert res["amazon"]["status"] == "ok"
    assert res["reddit"]["status"] == "ok"
    assert res["reddit"]["attempts"] == 2  # flaky: retried
    assert res["price_sites"]["status"] == "failed"
    assert res["expert_reviews"] == {**res["expert_reviews"], "status": "skipped",
                                     "reason": "budget"}  # fmt: skip
    # the price model ran on the local Dask cluster forkjoin started for the run
    assert res["price_model"]["status"] == "ok"
    assert res["price_model"]["where"].startswith("tcp://127.0.0.1:")
    sys.path.insert(0, str(EXAMPLES / "research"))
    import sources

    expected = sources.price_model("noise-cancelling headphones", 200_000)
    assert results_of(r)["aggregate"]["price"] == expected
    assert results_of(r)["aggregate"]["sources_ok"] == ["amazon", "reddit", "youtube"]
    assert "cost" in r.stderr
    assert "sequential" in r.stderr
    assert re.search(r"price_sites +failed +2 ", r.stderr)  # the failure is shown, not hidden
    assert "LocalCluster started in" in r.stderr
    p = python("research/research.py")
    assert p.returncode == 0, p.stderr
    assert "speedup" in p.stdout
    assert f'"median": {expected["median"]}' in p.stdout
