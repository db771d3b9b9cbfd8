"""A skewed clock: the service refuses the signature, both senders learn its time and recover."""

import contextlib
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from relay.awsjson.signing import ClockOffset
from relay.emulator import Faults
from relay.transfer import (
    CallbackError,
    RetryPolicy,
    TransferSender,
    open_lean_transfer,
    open_transfer,
)
from tests.conftest import Emulator
from tests.support import make_steps

# The Date header has whole seconds, and a call takes a moment: the learnt offset is this close.
TOLERANCE_S = 3.0


@contextlib.asynccontextmanager
async def sender(kind: str, clock: ClockOffset) -> AsyncIterator[TransferSender]:
    """A one-attempt sender of this kind, signing with this clock offset."""
    opener = open_lean_transfer if kind == "lean" else open_transfer
    async with opener(max_pool_connections=2, call_timeout_s=5, clock=clock) as client:
        yield TransferSender(
            client, RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
        )


@pytest.mark.parametrize("kind", ["lean", "aiobotocore"])
@pytest.mark.parametrize(
    ("skew_s", "wording"), [(900, "Signature expired: "), (-900, "Signature not yet current: ")]
)
async def test_a_refused_signing_time_teaches_the_offset_and_the_next_call_succeeds(
    emulator: Emulator, kind: str, skew_s: int, wording: str
) -> None:
    """With the service 15 minutes off, the first call is InvalidSignatureException, the sender
    learns the offset from its Date header, and the next call is signed in time and delivered."""
    step = make_steps(1, seed=130)[0]
    emulator.state.register_many([step.step_key])
    emulator.state.set_faults(Faults(clock_skew_s=skew_s))
    clock = ClockOffset()

    async with sender(kind, clock) as callbacks:
        with capture_logs() as logs, pytest.raises(CallbackError) as refused:
            await callbacks.call(step)
        learnt_s = clock.seconds
        await callbacks.call(step)

    assert refused.value.code == "InvalidSignatureException"
    assert refused.value.message.startswith(wording)
    assert refused.value.http_status == 400
    assert abs(learnt_s - skew_s) < TOLERANCE_S
    assert not emulator.state.is_waiting(*step.step_key)
    assert [call.error_code for call in emulator.state.calls] == [
        "InvalidSignatureException",
        None,
    ]
    [warning] = [entry for entry in logs if entry["event"] == "clock offset learnt"]
    assert warning["log_level"] == "warning"
    assert abs(warning["offset_s"] - skew_s) < TOLERANCE_S


@pytest.mark.parametrize("kind", ["lean", "aiobotocore"])
async def test_a_clock_within_the_window_learns_nothing(emulator: Emulator, kind: str) -> None:
    """A service two minutes off still accepts the signature; no offset is learnt or used."""
    step = make_steps(1, seed=131)[0]
    emulator.state.register_many([step.step_key])
    emulator.state.set_faults(Faults(clock_skew_s=120))
    clock = ClockOffset()

    async with sender(kind, clock) as callbacks:
        await callbacks.call(step)

    assert clock.seconds == 0
    assert not emulator.state.is_waiting(*step.step_key)


@pytest.mark.parametrize("kind", ["lean", "aiobotocore"])
async def test_a_known_offset_signs_the_first_call_in_time(emulator: Emulator, kind: str) -> None:
    """A clock offset learnt earlier (say by another sender sharing it) is used from the start."""
    step = make_steps(1, seed=132)[0]
    emulator.state.register_many([step.step_key])
    emulator.state.set_faults(Faults(clock_skew_s=-1800))

    async with sender(kind, ClockOffset(seconds=-1800)) as callbacks:
        await callbacks.call(step)

    assert [call.error_code for call in emulator.state.calls] == [None]
