"""The engine's concurrency bound: never more holders than the limit, waiters in order,
and a waiter cancelled at any moment neither loses a place nor keeps one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from application.limiter import Limiter


def test_holders_never_exceed_the_limit_and_waiters_are_served_in_order() -> None:
    async def scenario() -> tuple[int, list[int]]:
        limiter, holding, most, order = Limiter(3), 0, 0, []
        gate = asyncio.Event()

        async def work(i: int) -> None:
            nonlocal holding, most
            await limiter.acquire()
            holding += 1
            most = max(most, holding)
            order.append(i)
            await gate.wait()
            holding -= 1
            limiter.release()

        tasks = [asyncio.create_task(work(i)) for i in range(50)]
        while len(order) < 3:
            await asyncio.sleep(0)
        assert limiter.waiting == 47
        gate.set()
        await asyncio.gather(*tasks)
        return most, order

    most, order = asyncio.run(scenario())
    assert most == 3
    assert order == list(range(50))


async def _two_waiting(limiter: Limiter, got: list[str]) -> Any:
    """The limiter's one place held; `first` and `second` wait for it, in that order."""
    await limiter.acquire()

    async def wait(name: str) -> None:
        await limiter.acquire()
        got.append(name)
        limiter.release()

    first = asyncio.create_task(wait("first"))
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    return first, second, wait


def test_a_cancelled_waiter_gives_up_its_turn_without_blocking_later_ones() -> None:
    async def scenario() -> list[str]:
        limiter, got = Limiter(1), []
        first, second, wait = await _two_waiting(limiter, got)
        first.cancel()  # cancelled while it waits
        await asyncio.sleep(0)
        limiter.release()
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        late = asyncio.create_task(wait("late"))  # no stale waiter is in the way
        await asyncio.wait_for(late, 1)
        return got

    assert asyncio.run(scenario()) == ["second", "late"]


def test_a_waiter_cancelled_just_as_it_is_handed_a_place_passes_the_place_on() -> None:
    async def scenario() -> list[str]:
        limiter, got = Limiter(1), []
        first, second, _ = await _two_waiting(limiter, got)
        limiter.release()  # hands the place to `first`...
        first.cancel()  # ...which is cancelled before it resumes
        await asyncio.wait_for(second, 1)
        with pytest.raises(asyncio.CancelledError):
            await first
        return got

    assert asyncio.run(scenario()) == ["second"]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Limiter(0)
