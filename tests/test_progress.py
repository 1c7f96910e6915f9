"""Live progress: drawn from events into a rich console, silent when not on a terminal."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from typing import Any

import pytest

import forkjoin as fj
from forkjoin._outcome import Outcome, Status
from forkjoin._progress import ProgressObserver, progress_observer

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _console(terminal: bool = True) -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), width=80, force_terminal=terminal, color_system=None)


def _observer(clock: FakeTime, terminal: bool = True, **kw: Any) -> ProgressObserver:
    return ProgressObserver(_console(terminal), auto_refresh=False, get_time=clock, **kw)


def _text(obs: ProgressObserver) -> str:
    return ANSI.sub("", obs.console.file.getvalue())  # type: ignore[attr-defined]


def test_figures_follow_the_events() -> None:
    clock = FakeTime()
    obs = _observer(clock)
    obs.on_run_started(fj.RunStarted("r", 0.0, {}))
    for n in ("a", "b", "c"):
        obs.on_task_queued(fj.TaskQueued("r", 0.0, n, None, 0))
    obs.on_attempt_started(fj.AttemptStarted("r", 0.0, "a", None, 1))
    obs.on_attempt_started(fj.AttemptStarted("r", 0.0, "b", None, 1))
    assert obs.lines() == ("0/3 done · 0:00:00 elapsed", "2 running · 0.0/s")
    clock.now = 2.0
    obs.on_attempt_failed(fj.AttemptFailed("r", 2.0, "a", None, 1, ValueError("x"), 0.5))
    ok = Outcome("b", Status.OK, 1, None, None, 1, 0.0, 2.0, 0.5)
    obs.on_task_finished(fj.TaskFinished("r", 2.0, ok))
    assert obs.lines() == ("1/3 done · ETA 0:00:04", "0 running · 1 retrying · 0.5/s · $0.5000")
    obs.on_attempt_started(fj.AttemptStarted("r", 2.5, "a", None, 2))
    clock.now = 4.0
    failed = Outcome("a", Status.FAILED, None, ValueError("x"), None, 2, 0.0, 4.0)
    obs.on_task_finished(fj.TaskFinished("r", 4.0, failed))
    skipped = Outcome("c", Status.SKIPPED, None, fj.TaskSkipped("deadline"), "deadline")
    obs.on_task_finished(fj.TaskFinished("r", 4.0, skipped))
    assert obs.lines() == (
        "3/3 done · 0:00:04 elapsed",
        "0 running · 1 failed · 1 skipped/cancelled · 0.8/s · $0.5000",
    )
    obs.on_run_finished(fj.RunFinished("r", 4.0, fj.Results({})))
    text = _text(obs)
    # the last frame, as an 80-column terminal shows it
    frame = text.rstrip().splitlines()[-2:]
    assert frame[0].rstrip() == "forkjoin " + "━" * 24 + " 3/3 done · 0:00:04 elapsed"
    assert frame[1].rstrip() == "  0 running · 1 failed · 1 skipped/cancelled · 0.8/s · $0.5000"


def test_a_real_run_drawn_on_a_terminal(vrun: Any) -> None:
    clock = FakeTime()
    obs = _observer(clock, total=None)

    async def work(i: int) -> int:
        await asyncio.sleep(i)
        clock.now = asyncio.get_running_loop().time()
        return i

    results = vrun(
        fj.gather(
            {f"t{i}": fj.task(work, i, cost=0.25) for i in range(1, 5)},
            limit=2,
            observers=[obs],
        )
    )
    assert results.all_ok
    first, second = _text(obs).rstrip().splitlines()[-2:]
    assert "4/4 done" in first
    assert second.startswith("  0 running · ")
    assert second.endswith("$1.0000")
    assert obs.running == 0
    assert not obs.waiting


def test_refreshes_are_throttled() -> None:
    clock = FakeTime()
    obs = _observer(clock, refresh_per_second=1)
    obs.on_run_started(fj.RunStarted("r", 0.0, {}))
    before = _text(obs)
    for i in range(50):
        obs.on_task_queued(fj.TaskQueued("r", 0.0, f"t{i}", None, 0))
    assert _text(obs) == before  # no time passed: no redraw per event
    clock.now = 1.0
    obs.on_task_queued(fj.TaskQueued("r", 1.0, "late", None, 0))
    assert "0/51 done" in _text(obs)
    assert _text(obs).count("0/51 done") == 1


def test_nothing_is_drawn_off_a_terminal(vrun: Any) -> None:
    obs = _observer(FakeTime(), terminal=False)
    assert not obs.enabled
    vrun(fj.gather({"a": (asyncio.sleep, 0.1)}, observers=[obs]))
    assert obs.console.file.getvalue() == ""  # type: ignore[attr-defined]


def test_progress_true_attaches_nothing_when_stderr_is_not_a_terminal() -> None:
    # pytest captures stderr, so it is not a terminal here
    assert progress_observer(True) is None
    assert progress_observer(False) is None
    custom = _observer(FakeTime())
    assert progress_observer(custom) is custom
    with pytest.raises(fj.InvalidPolicy, match="progress: expected True, False or an observer"):
        progress_observer("yes")


def test_stdout_is_never_redirected(vrun: Any) -> None:
    obs = _observer(FakeTime())
    seen: list[Any] = []

    async def look() -> None:
        seen.append(sys.stdout)

    before = sys.stdout
    vrun(fj.gather({"a": look}, observers=[obs]))
    assert seen == [before]


def test_piped_json_stays_clean() -> None:
    script = (
        "import asyncio, json, forkjoin as fj\n"
        "r = fj.run({'a': (asyncio.sleep, 0.01, 'x')}, progress=True)\n"
        "print(json.dumps(r.ok_values()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == '{"a": "x"}\n'
    assert done.stderr == ""


@pytest.mark.parametrize("entry", ["map", "imap", "map_reduce", "Fan"])
def test_progress_keyword_on_every_entry_point(vrun: Any, entry: str) -> None:
    clock = FakeTime()
    obs = _observer(clock)

    async def double(x: int) -> int:
        await asyncio.sleep(x)
        return 2 * x

    async def main() -> None:
        items = [1, 2, 3, 1, 2]
        if entry == "map":
            assert await fj.map(double, items, limit=2, progress=obs) == [2, 4, 6, 2, 4]
        elif entry == "imap":
            got = [o.value async for o in fj.imap(double, items, limit=2, progress=obs)]
            assert sorted(got) == [2, 2, 4, 4, 6]
        elif entry == "map_reduce":
            total = await fj.map_reduce(double, items, lambda a, v: a + v, 0, progress=obs)
            assert total == 18
        else:
            async with fj.Fan(limit=2, progress=obs) as fan:
                for i, x in enumerate(items):
                    fan.spawn(f"t{i}", double, x)

    vrun(main())
    assert obs.done == 5
    assert "5/5 done" in _text(obs).rstrip().splitlines()[-2]
