"""An unexpected error's log line (issue 14): a traceback without local variables, structured
in JSON, and never a whole callback token, in either log format."""

import asyncio
import io
import json
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from relay.message import StepResult
from relay.observability import configure_logging
from relay.transfer import Sent, TransferSender
from relay.worker import open_worker
from tests.conftest import Queues
from tests.integration.worker_support import fast_config
from tests.support import SQSClient, eventually, make_steps, send_bodies, total_depth

FAILED = "message failed unexpectedly"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Where the test's logging goes; structlog's defaults are back afterwards."""
    stream = io.StringIO()
    try:
        yield stream
    finally:
        structlog.reset_defaults()


class ClientBroke(RuntimeError):
    """What a broken Transfer Family client raised: nothing relay classifies."""


async def exploding_send(self: TransferSender, step: StepResult) -> Sent:
    """TransferSender.send with a bug: it fails after putting the whole token in a local."""
    whole_token = step.token  # a local, as in any frame a traceback with locals would print
    raise ClientBroke(f"callback client broke after {len(whole_token)} characters")


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_an_unexpected_error_is_logged_without_locals_or_the_token(
    sqs: SQSClient,
    queues: Queues,
    log_stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    """A callback that raises something unexpected is logged with its traceback: in JSON as
    `exception` (type, message, frames of file, line and function, no locals; it was a bare
    `"exc_info": true`), in text as a plain traceback (it printed the locals, token and all)."""
    rng = random.Random(71)
    token = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(64))
    step = StepResult(*make_steps(1, seed=71)[0].step_key[:2], token, "SUCCESS")
    await send_bodies(sqs, queues.url, [step.to_body()])
    monkeypatch.setattr(TransferSender, "send", exploding_send)
    configure_logging(fmt, "WARNING", stream=log_stream)

    async with open_worker(fast_config(queues.url, exit_when_empty=False)) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: FAILED in log_stream.getvalue(), what="the error logged")
        worker.stop()
        await asyncio.wait_for(running, 30)

    logged = log_stream.getvalue()
    # Not the whole token, nor more of it than its shortened form (6 characters): a traceback
    # with locals cuts long values to the line's width, and that is still too much.
    assert token[:12] not in logged, "a callback token was logged"
    if fmt == "json":
        line = next(json.loads(text) for text in logged.splitlines() if FAILED in text)
        assert line["token"] == step.short_token, "the line names its token, shortened"
        assert "exc_info" not in line
        (error,) = line["exception"]
        assert error["exc_type"] == "ClientBroke"
        assert error["exc_value"] == "callback client broke after 64 characters"
        frames: list[dict[str, Any]] = error["frames"]
        assert frames, "no frames"
        assert all(set(frame) == {"filename", "lineno", "name"} for frame in frames)
        assert frames[-1]["name"] == "exploding_send"
        assert frames[-1]["filename"].endswith("test_error_logs.py")
    else:
        assert f"token={step.short_token}" in logged, "the line names its token, shortened"
        assert "Traceback (most recent call last)" in logged
        assert "ClientBroke: callback client broke after 64 characters" in logged

    # Left on the queue (it comes back when its visibility lapses): still queued, in flight.
    assert await total_depth(sqs, queues.url) == 1
    assert await total_depth(sqs, queues.dlq_url) == 0


async def leaky_send(self: TransferSender, step: StepResult) -> Sent:
    """TransferSender.send with a worse bug: the exception's own message holds the token."""
    raise ClientBroke(f"request for token {step.token} could not be built")


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_a_token_in_an_exceptions_own_message_is_shortened_in_the_log(
    sqs: SQSClient,
    queues: Queues,
    log_stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    """An exception whose message carries the message's whole token: every log line of that
    message (the error, its traceback, the finished line) shows the token shortened instead;
    the message is released with the backoff, not left to its visibility timeout."""
    rng = random.Random(72)
    token = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(48))
    step = StepResult(*make_steps(1, seed=72)[0].step_key[:2], token, "SUCCESS")
    await send_bodies(sqs, queues.url, [step.to_body()])
    monkeypatch.setattr(TransferSender, "send", leaky_send)
    configure_logging(fmt, "INFO", stream=log_stream)
    config = fast_config(queues.url, exit_when_empty=False, release_base_s=30, release_cap_s=30)

    async with open_worker(config) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: '"released"' in log_stream.getvalue() or "outcome=released"
                         in log_stream.getvalue(), what="the message released")  # fmt: skip
        worker.stop()
        await asyncio.wait_for(running, 30)

    logged = log_stream.getvalue()
    assert token[:12] not in logged, "a callback token was logged"
    assert f"request for token {step.short_token} could not be built" in logged
    assert worker.counts["released"] == 1
    assert await total_depth(sqs, queues.url) == 1
