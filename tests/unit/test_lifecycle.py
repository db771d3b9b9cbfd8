"""`relay.lifecycle`: a stop's grace, what may start within it, and a drain that never cuts
work marked settling (DESIGN §3), in-process with no I/O."""

import asyncio
import math

import pytest

from relay.lifecycle import Shutdown, drain


def test_before_a_stop_anything_may_start() -> None:
    """No stop requested: the time left is infinite, every duration is allowed."""
    shutdown = Shutdown(grace_s=5.0)
    assert shutdown.time_left_s() == math.inf
    assert shutdown.allows(3600.0)


async def test_after_a_stop_only_what_fits_in_the_grace_may_start() -> None:
    """A 5 s grace: a 1 s call may start, a 10 s one may not; a second request leaves none."""
    shutdown = Shutdown(grace_s=5.0)
    shutdown("SIGTERM")
    assert 4.0 < shutdown.time_left_s() <= 5.0
    assert shutdown.allows(1.0)
    assert not shutdown.allows(10.0)
    shutdown("SIGTERM")
    assert shutdown.abandon.is_set()
    assert shutdown.time_left_s() == 0.0
    assert not shutdown.allows(0.001)
    assert shutdown.reason == "SIGTERM"


async def test_a_drain_cancels_waiting_work_but_waits_for_settling_work() -> None:
    """At the grace's end the task that waits is cancelled; the one marked settling (a call on
    the wire) is not, and finishes with its own result."""
    shutdown = Shutdown(grace_s=0.05)
    answered = asyncio.Event()

    async def on_the_wire() -> str:
        shutdown.settle()
        await answered.wait()
        return "answered"

    async def waiting() -> str:
        await asyncio.Event().wait()
        return "never"

    wire = asyncio.create_task(on_the_wire())
    idle = asyncio.create_task(waiting())
    await asyncio.sleep(0)  # both start; the first marks itself settling
    shutdown("SIGTERM")
    draining = asyncio.create_task(
        drain({wire, idle}, grace_s=0.05, abandon=shutdown.abandon, keep=shutdown.is_settling)
    )
    await asyncio.wait_for(asyncio.shield(asyncio.wait([idle])), 5)
    assert idle.cancelled()
    assert not wire.done()
    answered.set()
    cancelled = await asyncio.wait_for(draining, 5)
    assert wire.result() == "answered"
    assert cancelled == 1


async def test_work_that_stops_settling_after_the_grace_is_cancelled_then() -> None:
    """A task kept past the grace that goes back to waiting (a retry's backoff) is cancelled
    as soon as the drain sees it waiting."""
    shutdown = Shutdown(grace_s=0.0)
    step = asyncio.Event()

    async def settles_then_waits() -> None:
        shutdown.settle()
        await step.wait()
        shutdown.unsettle()
        await asyncio.Event().wait()

    task = asyncio.create_task(settles_then_waits())
    await asyncio.sleep(0)
    draining = asyncio.create_task(
        drain({task}, grace_s=0.0, abandon=shutdown.abandon, keep=shutdown.is_settling)
    )
    await asyncio.sleep(0.1)  # several of the drain's passes: the task stays kept
    assert not task.done()
    step.set()
    assert await asyncio.wait_for(draining, 5) == 1
    assert task.cancelled()


async def test_a_drain_cancels_kept_work_at_its_hard_bound() -> None:
    """A kept task that never ends (a bug) is cancelled `keep_at_most_s` after the grace."""
    shutdown = Shutdown(grace_s=0.0)

    async def stuck() -> None:
        shutdown.settle()
        await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    cancelled = await asyncio.wait_for(
        drain(
            {task},
            grace_s=0.0,
            abandon=shutdown.abandon,
            keep=shutdown.is_settling,
            keep_at_most_s=0.1,
        ),
        5,
    )
    assert cancelled == 1
    with pytest.raises(asyncio.CancelledError):
        await task
