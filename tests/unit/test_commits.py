"""Publishes waiting for their commit: woken in order, failed on a step-down, timed out."""

from __future__ import annotations

import asyncio

import pytest

from skyrelay.origin.commits import CommitWaiters


async def test_waiters_wake_as_the_commit_reaches_them() -> None:
    waiting = CommitWaiters()
    first = asyncio.ensure_future(waiting.wait("c", 1, 5))
    second = asyncio.ensure_future(waiting.wait("c", 2, 5))
    await asyncio.sleep(0)
    assert len(waiting) == 2
    waiting.committed("c", 1)
    assert await first is True
    assert not second.done()
    waiting.committed("c", 2)
    assert await second is True
    assert len(waiting) == 0


async def test_a_step_down_fails_every_waiter_of_the_channel() -> None:
    waiting = CommitWaiters()
    task = asyncio.ensure_future(waiting.wait("c", 3, 5))
    other = asyncio.ensure_future(waiting.wait("d", 3, 5))
    await asyncio.sleep(0)
    waiting.fail("c", RuntimeError("leadership changed"))
    with pytest.raises(RuntimeError):
        await task
    assert not other.done()
    waiting.committed("d", 3)
    assert await other is True


async def test_a_commit_that_never_comes_times_out() -> None:
    assert await CommitWaiters().wait("c", 1, 0.01) is False
