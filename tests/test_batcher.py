"""The micro-batcher on its own: who runs with whom, errors, admission and its settings."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pinid.service.batcher import MicroBatcher
from pinid.service.pool import InferencePool, PoolBusy


class Recorder:
    """A batch function that records its batches, fails items named "bad", and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[str]) -> list[str | Exception]:
        self.release.wait(5)
        self.batches.append(list(items))
        if "crash" in items:
            raise RuntimeError("the whole batch failed")
        return [ValueError(f"{item} refused") if item == "bad" else item.upper() for item in items]


async def _held_then_queued(batcher: MicroBatcher, run: Recorder, items: list[str]) -> list:
    """``first`` runs alone and is held while ``items`` arrive; then all finish."""
    run.release.clear()
    first = asyncio.create_task(batcher.submit("first"))
    await asyncio.sleep(0.05)  # "first" is running, held
    rest = [asyncio.create_task(batcher.submit(item)) for item in items]
    await asyncio.sleep(0.05)
    run.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_a_lone_request_runs_at_once_even_with_a_window():
    run = Recorder()
    batcher = MicroBatcher(InferencePool(8), run, max_batch=8, window_s=0.1)

    async def scenario() -> tuple[str, float]:
        started = time.perf_counter()
        answer = await batcher.submit("a")
        return answer, time.perf_counter() - started

    answer, seconds = asyncio.run(scenario())
    assert answer == "A" and run.batches == [["a"]] and seconds < 0.09


def test_requests_that_queue_while_a_batch_runs_are_the_next_batch_up_to_its_cap():
    run = Recorder()
    batcher = MicroBatcher(InferencePool(8), run, max_batch=3)
    items = ["b", "c", "d", "e", "f"]
    answers = asyncio.run(_held_then_queued(batcher, run, items))
    assert answers == ["FIRST", "B", "C", "D", "E", "F"]
    assert run.batches == [["first"], ["b", "c", "d"], ["e", "f"]]


def test_a_bad_item_fails_alone_and_a_crash_fails_its_batch_only():
    run = Recorder()
    batcher = MicroBatcher(InferencePool(8), run, max_batch=8)
    answers = asyncio.run(_held_then_queued(batcher, run, ["b", "bad", "c"]))
    assert answers[:2] == ["FIRST", "B"] and answers[3] == "C"
    assert isinstance(answers[2], ValueError) and str(answers[2]) == "bad refused"
    crashed = asyncio.run(_held_then_queued(batcher, run, ["d", "crash"]))
    assert crashed[0] == "FIRST" and all(isinstance(a, RuntimeError) for a in crashed[1:])
    assert asyncio.run(batcher.submit("after")) == "AFTER"


def test_requests_over_the_pools_capacity_get_pool_busy_and_slots_come_back():
    run = Recorder()
    pool = InferencePool(2)
    batcher = MicroBatcher(pool, run, max_batch=8)
    answers = asyncio.run(_held_then_queued(batcher, run, ["b", "c"]))
    assert answers[:2] == ["FIRST", "B"] and isinstance(answers[2], PoolBusy)
    assert pool.admitted == 0 and asyncio.run(batcher.submit("d")) == "D"


def test_a_request_whose_client_went_away_is_left_out_of_its_batch():
    run = Recorder()
    batcher = MicroBatcher(InferencePool(8), run, max_batch=8)

    async def scenario() -> list:
        run.release.clear()
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher.submit("gone"))
        kept = asyncio.create_task(batcher.submit("kept"))
        await asyncio.sleep(0.01)
        gone.cancel()
        run.release.set()
        return await asyncio.gather(first, kept)

    assert asyncio.run(scenario()) == ["FIRST", "KEPT"]
    assert run.batches == [["first"], ["kept"]]


@pytest.mark.parametrize(
    ("max_batch", "window_s"), [(0, 0.0), (8, -0.001), (8, float("nan")), (8, 0.5)]
)
def test_settings_out_of_range_are_refused(max_batch, window_s):
    with pytest.raises(ValueError, match=r"max_batch|window_s"):
        MicroBatcher(InferencePool(8), Recorder(), max_batch=max_batch, window_s=window_s)
