"""A DLQ that cannot hold the copy (issue: the copy looped the message without end).

relay reads the DLQ's MaximumMessageSize at start-up: it refuses to start when the DLQ takes
less than the source queue, and sizes every copy against the DLQ's own limit. A copy SQS still
refuses as the sender's fault is logged at ERROR, counted, and released with backoff.
"""

import asyncio
import uuid

import pytest
import structlog
from structlog.testing import capture_logs

from relay.cli import main
from relay.errors import ConfigError
from relay.sqs import QueuePair, create_queue_pair
from relay.worker import open_worker
from tests.conftest import Emulator
from tests.integration.worker_support import fast_config
from tests.support import SQSClient, drain, eventually, send_bodies, total_depth

SMALL = 262_144
"""256 KiB: SQS's MaximumMessageSize before 2025, and what many existing DLQs still have."""


async def sized_pair(sqs: SQSClient, *, queue_bytes: int, dlq_bytes: int) -> QueuePair:
    """A fresh queue pair with these MaximumMessageSize settings."""
    pair = await create_queue_pair(sqs, f"relay-{uuid.uuid4().hex[:12]}", max_receive_count=100)
    await sqs.set_queue_attributes(
        QueueUrl=pair.url, Attributes={"MaximumMessageSize": str(queue_bytes)}
    )
    await sqs.set_queue_attributes(
        QueueUrl=pair.dlq_url, Attributes={"MaximumMessageSize": str(dlq_bytes)}
    )
    return pair


async def test_a_dlq_smaller_than_the_queue_refuses_to_start_naming_both(sqs: SQSClient) -> None:
    """DLQ 256 KiB behind a 1 MiB queue: ConfigError (exit 2) naming both queues and sizes."""
    pair = await sized_pair(sqs, queue_bytes=1_048_576, dlq_bytes=SMALL)

    with pytest.raises(ConfigError) as refused:
        async with open_worker(fast_config(pair.url)):
            pass

    text = str(refused.value)
    assert pair.url in text
    assert pair.dlq_url in text
    assert str(SMALL) in text
    assert "1048576" in text


def test_relay_run_exits_2_with_one_line_when_the_dlq_is_smaller(
    sqs_url_pair: QueuePair, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relay run` on such a pair: exit 2, one line on stderr, no traceback."""
    try:
        with pytest.raises(SystemExit) as exited:
            main(["run", "--queue-url", sqs_url_pair.url, "--http-port", "0"])
    finally:
        structlog.reset_defaults()  # `run` pointed logging at this test's captured stdout

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "MaximumMessageSize" in err
    assert "Traceback" not in err


@pytest.fixture
def sqs_url_pair(moto_url: str) -> QueuePair:
    """A 1 MiB queue with a 256 KiB DLQ, made outside the test's event loop."""
    from aiobotocore.session import get_session

    async def make() -> QueuePair:
        async with get_session().create_client("sqs") as client:
            return await sized_pair(client, queue_bytes=1_048_576, dlq_bytes=SMALL)

    return asyncio.run(make())


async def test_a_copy_is_sized_against_the_dlqs_own_limit(
    sqs: SQSClient, emulator: Emulator
) -> None:
    """Both queues at 256 KiB and a body that nearly fills that: the copy's attributes are cut
    to fit the DLQ, the body is kept byte for byte, and the message is dead-lettered once."""
    pair = await sized_pair(sqs, queue_bytes=SMALL, dlq_bytes=SMALL)
    body = '{"not": "a step result", "pad": "' + "x" * (SMALL - 200) + '"}'
    await send_bodies(sqs, pair.url, [body])

    async with open_worker(fast_config(pair.url)) as worker:
        await asyncio.wait_for(worker.run(handle_signals=False), 60)

    [copy] = await drain(sqs, pair.dlq_url)
    assert copy.body == body
    assert copy.attributes["relay-reason"] == "validation"
    assert worker.counts["dead_lettered"] == 1
    assert await total_depth(sqs, pair.url) == 0


async def test_a_copy_refused_as_the_senders_fault_is_logged_counted_and_released(
    sqs: SQSClient, emulator: Emulator
) -> None:
    """The DLQ shrinks after start-up: SQS refuses the copy as malformed; relay logs it at
    ERROR with the code, counts it by code, and leaves the message on the queue with backoff
    (no loop of immediate retries)."""
    pair = await sized_pair(sqs, queue_bytes=SMALL, dlq_bytes=SMALL)
    config = fast_config(pair.url, exit_when_empty=False, release_base_s=30.0, release_cap_s=30.0)

    with capture_logs() as logs:
        async with open_worker(config) as worker:
            await sqs.set_queue_attributes(
                QueueUrl=pair.dlq_url, Attributes={"MaximumMessageSize": "1024"}
            )
            await send_bodies(sqs, pair.url, ["x" * 4000])
            running = asyncio.create_task(worker.run(handle_signals=False))
            await eventually(
                lambda: worker.metrics.total(worker.metrics.dead_letter_errors) >= 1,
                what="a refused copy",
            )
            worker.stop()
            await asyncio.wait_for(running, 30)

    refused = [line for line in logs if "refused by SQS as malformed" in line["event"]]
    assert len(refused) == 1
    assert refused[0]["log_level"] == "error"
    assert refused[0]["error_code"] == "InvalidParameterValue"
    assert refused[0]["retry_in_s"] >= 15
    code = {"reason": "InvalidParameterValue"}
    assert worker.metrics.registry.get_sample_value("relay_dead_letter_errors_total", code) == 1
    assert worker.counts["released"] == 1
    assert await drain(sqs, pair.dlq_url) == []
    assert await total_depth(sqs, pair.url) == 1
