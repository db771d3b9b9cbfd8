"""The pure limits: token bucket, adaptive rate, in-flight budget, circuits, duplicate memory."""

import asyncio

import pytest

from relay.limits import AdaptiveRate, Circuits, DeliveredMemory, InFlightBudget, TokenBucket


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(
    allowed_rps: float,
    burst: int,
    *,
    adaptive: bool,
    seconds: float = 60.0,
    offered_rps: float = 2000.0,
) -> tuple[int, int]:
    """Drives an AdaptiveRate against a service token bucket in simulated time, with callers
    that always have work (offered_rps); returns (accepted, throttled)."""
    clock = FakeClock()
    rate = AdaptiveRate(0.0, enabled=adaptive, clock=clock)
    service = TokenBucket(allowed_rps, burst=burst, clock=clock)
    step = 1.0 / offered_rps
    accepted = throttled = 0
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        if rate.try_acquire() > 0:
            continue
        if service.try_take() == 0:
            accepted += 1
            rate.accepted()
        else:
            throttled += 1
            rate.throttled()
    return accepted, throttled


@pytest.mark.parametrize(("allowed", "burst"), [(200, 50), (50, 10), (1000, 100)])
def test_adaptive_rate_finds_the_allowed_rate(allowed: float, burst: int) -> None:
    """Against a service allowing N calls/s, goodput reaches 95 % of N and at most 5 % of calls
    are throttled."""
    accepted, throttled = simulate(allowed, burst, adaptive=True)
    goodput = accepted / 60.0
    assert goodput >= 0.95 * allowed
    assert throttled <= 0.05 * (accepted + throttled)


def test_without_adaptation_most_calls_are_throttled() -> None:
    """The comparison: callers that never slow down get most of their calls throttled."""
    accepted, throttled = simulate(200, 50, adaptive=False)
    assert throttled > accepted


def test_max_rps_stays_a_ceiling() -> None:
    """The adapted rate never climbs above --max-rps."""
    clock = FakeClock()
    rate = AdaptiveRate(50.0, clock=clock)
    rate.throttled()
    for _ in range(1000):
        clock.now += 1.0
        while rate.try_acquire() == 0:  # callers always waiting: the rate binds
            pass
    assert rate.rate == 50.0


def test_rate_does_not_grow_without_demand() -> None:
    """When callers never wait for the rate, it stays where it is instead of climbing to a
    figure nobody sends at."""
    clock = FakeClock()
    rate = AdaptiveRate(0.0, clock=clock)
    for _ in range(100):
        clock.now += 0.05
        rate.accepted()
    rate.throttled()
    adapted = rate.rate
    for _ in range(100):
        clock.now += 1.0
        assert rate.try_acquire() == 0  # one call a second, far below the rate
    assert rate.rate == adapted


def test_throttles_of_one_burst_count_once() -> None:
    """Throttles arriving right after a decrease (calls already in flight) do not lower the
    rate again."""
    clock = FakeClock()
    rate = AdaptiveRate(0.0, clock=clock)
    for _ in range(100):
        clock.now += 0.01
        rate.accepted()
    rate.throttled()
    first = rate.rate
    clock.now += 0.01
    rate.throttled()
    assert rate.rate == first
    assert 90 <= first <= 100


def test_circuit_opens_probes_once_and_closes() -> None:
    """A denied workflow is held for the cooldown, then lets exactly one probe through."""
    clock = FakeClock()
    circuits = Circuits(10.0, clock=clock)
    circuits.denied("w-a")
    assert not circuits.allow("w-a")
    assert circuits.allow("w-b")
    clock.now += 10.0
    assert circuits.allow("w-a")
    assert not circuits.allow("w-a")
    circuits.answered("w-a")
    assert circuits.allow("w-a")
    assert len(circuits) == 0


def test_delivered_memory_is_bounded_and_expires() -> None:
    """The memory keeps at most `size` entries and forgets each after `ttl_s`."""
    clock = FakeClock()
    memory = DeliveredMemory(3, 5.0, clock=clock)
    for i in range(10):
        memory.remember(("w", "e", str(i)), "SUCCESS")
    assert len(memory) == 3
    assert memory.status_of(("w", "e", "9")) == "SUCCESS"
    assert memory.status_of(("w", "e", "0")) is None
    clock.now += 5.0
    assert memory.status_of(("w", "e", "9")) is None
    assert len(memory) == 0


async def test_in_flight_budget_reserves_at_most_ten_and_only_what_is_free() -> None:
    """A poll reserves up to 10 free slots; what it does not fill and what finishes comes back."""
    budget = InFlightBudget(12, AdaptiveRate(0.0))
    assert await budget.reserve() == 10
    assert await budget.reserve() == 2
    assert budget.room() == 0
    budget.release(3)
    assert await budget.reserve() == 3
    assert budget.free == 0


async def test_in_flight_budget_holds_about_two_seconds_of_sending_under_a_rate() -> None:
    """With a send rate of 2/s, at most 4 messages are held however many slots are free."""
    clock = FakeClock()
    rate = AdaptiveRate(2.0, clock=clock)
    budget = InFlightBudget(64, rate, lease_ahead_s=2.0)
    assert await budget.reserve() == 4
    assert budget.room() <= 0
    budget.release(1)
    assert budget.room() == 1


async def test_a_reserve_waits_for_a_slot_to_be_freed() -> None:
    """A poll with no room waits until a message finishes, then takes its slot."""
    budget = InFlightBudget(1, AdaptiveRate(0.0))
    assert await budget.reserve() == 1
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.release(1)
    assert await asyncio.wait_for(waiting, 5) == 1


def test_bucket_gives_its_burst_then_says_when_the_next_token_comes() -> None:
    """A full bucket yields `burst` tokens at once, then the wait until one more has refilled."""
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock)

    assert [bucket.try_take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take() == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.try_take() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.try_take() == 0.0


def test_bucket_saves_no_more_than_its_burst() -> None:
    """An idle bucket refills only up to its burst."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=2, clock=clock)
    clock.now += 3600

    assert [bucket.try_take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.try_take() > 0.0
