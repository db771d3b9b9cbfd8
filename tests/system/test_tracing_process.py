"""Tracing end to end (DESIGN §12): `relay run` and `relay replay` as processes exporting OTLP
over HTTP to a receiver on loopback, a producer's X-Ray trace carried through; and without
tracing asked for, or without the extra, no OpenTelemetry at all."""

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from relay.producer import StepResultPublisher
from relay.sqs import queue_name
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import register
from tests.otlp_receiver import ERROR, OtlpReceiver, ReceivedSpan, serve_otlp
from tests.support import SQSClient, drain, eventually, make_steps, total_depth
from tests.system.conftest import wait_exit
from tests.tracing_support import header_parent, root_trace_id, xray_header

pytestmark = pytest.mark.slow

CALLBACK = "Transfer.SendWorkflowStepState"
CONSUMER, PRODUCER, CLIENT = 5, 4, 3
"""OTLP's SPAN_KIND values."""
NOWHERE = "http://127.0.0.1:9/123456789012/results"
"""Nothing listens on the discard port: a command that reached the network would fail there."""


def start(
    *args: str, env: dict[str, str] | None = None, code: str | None = None
) -> subprocess.Popen[str]:
    """`python -m relay ARGS` (or `python -c CODE ARGS`) with the test's AWS chain, no RELAY_*
    or OTEL_* setting of the developer's, and `env` on top."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_", "OTEL_"))
    }
    launcher = ["-c", code] if code is not None else ["-m", "relay"]
    return subprocess.Popen(
        [sys.executable, *launcher, *args],
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def otlp_env(receiver: OtlpReceiver, emulator: Emulator) -> dict[str, str]:
    """Tracing asked for the OpenTelemetry way, exporting to the receiver quickly."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "relay-e2e",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "AWS_ENDPOINT_URL_TRANSFER": emulator.url,
    }


async def finish(process: subprocess.Popen[str], timeout_s: float = 60) -> tuple[int, str, str]:
    """Waits for the process without blocking the loop (the emulator and receiver run on it)."""
    code = await wait_exit(process, timeout_s)  # type: ignore[arg-type]
    out, err = process.communicate(timeout=10)
    return code, out, err


def one(spans: list[ReceivedSpan], **where: Any) -> ReceivedSpan:
    """The one span whose attributes hold these values."""
    found = [s for s in spans if all(s.attributes.get(k) == v for k, v in where.items())]
    assert len(found) == 1, (where, [(s.name, s.attributes) for s in spans])
    return found[0]


async def test_a_producers_x_ray_trace_runs_through_relay_and_its_replay_over_otlp(
    sqs: SQSClient, queues: Queues, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda step publishes in its invocation's X-Ray trace; `relay run`, exporting OTLP,
    continues it: the delivered message's `process` span is the child of the header's Parent in
    the Root's trace, its callback a client span beneath; the dead-lettered one's span is an
    error with its reason, and its DLQ copy's trace is continued by `relay replay --to
    transfer`, whose callback ends it. Log lines carry the trace; no token whole anywhere."""
    delivered, dead = make_steps(2, seed=901)
    register(emulator.state, [delivered])
    headers = [xray_header(), xray_header()]
    with monkeypatch.context() as lambda_env:  # what Lambda sets for an invocation
        lambda_env.setenv("AWS_LAMBDA_FUNCTION_NAME", "relay-step")
        for step, header in zip((delivered, dead), headers, strict=True):
            lambda_env.setenv("_X_AMZN_TRACE_ID", header + ";Lineage=a87bd80c:1")
            with StepResultPublisher(queues.url) as publisher:
                await asyncio.to_thread(publisher.publish, step)

    async with serve_otlp() as receiver:
        env = otlp_env(receiver, emulator)
        worker = start("run", "--queue-url", queues.url, "--exit-when-empty", "--http-port", "0",
                       env=env)  # fmt: skip
        code, out, err = await finish(worker)
        assert code == 0, err
        await eventually(lambda: len(receiver.spans) >= 4, what="the worker's spans exported")
        worker_spans = list(receiver.spans)

        process_name = f"process {queue_name(queues.url)}"
        ok = one(worker_spans, **{"relay.execution_id": delivered.execution_id})
        assert ok.name == process_name
        assert ok.kind == CONSUMER
        assert ok.trace_id == root_trace_id(headers[0])
        assert ok.parent_id == header_parent(headers[0])
        assert ok.service == "relay-e2e"
        assert ok.attributes["messaging.system"] == "aws_sqs"
        assert ok.attributes["relay.outcome"] == "delivered"
        (callback,) = [s for s in worker_spans if s.parent_id == ok.span_id]
        assert callback.name == CALLBACK
        assert callback.kind == CLIENT
        assert callback.trace_id == ok.trace_id
        assert callback.attributes["http.response.status_code"] == 200

        failed = one(worker_spans, **{"relay.execution_id": dead.execution_id})
        assert failed.trace_id == root_trace_id(headers[1])
        assert failed.status_code == ERROR
        assert failed.attributes["relay.reason"] == "not_found"
        assert failed.attributes["relay.outcome"] == "dead_lettered"
        send = one(
            worker_spans, **{"relay.reason": "not_found", "messaging.operation.type": "send"}
        )
        assert send.kind == PRODUCER
        assert send.parent_id == failed.span_id

        finished = {
            line["execution_id"]: line
            for line in map(json.loads, out.splitlines())
            if line.get("event") == "message finished"
        }
        assert finished[delivered.execution_id]["trace_id"] == ok.trace_id
        assert finished[delivered.execution_id]["span_id"] == ok.span_id
        assert finished[dead.execution_id]["trace_id"] == failed.trace_id

        register(emulator.state, [dead])  # registered late: the replay delivers it
        replayer = start("replay", "--dlq-url", queues.dlq_url, "--to", "transfer",
                         "--receive-wait", "0", "--json", env=env)  # fmt: skip
        code, out, err = await finish(replayer)
        assert code == 0, err
        assert json.loads(out)["replayed"] == 1
        await eventually(
            lambda: any(s.name.startswith("replay ") for s in receiver.spans),
            what="the replay's spans exported",
        )
        replay_spans = receiver.spans[len(worker_spans) :]

    replayed = one(replay_spans, **{"messaging.operation.name": "replay"})
    assert replayed.trace_id == failed.trace_id
    assert replayed.parent_id == send.span_id
    assert replayed.attributes["relay.outcome"] == "replayed"
    (last,) = [s for s in replay_spans if s.parent_id == replayed.span_id]
    assert last.name == CALLBACK
    assert last.attributes["http.response.status_code"] == 200
    for span in receiver.spans:
        for text in span.texts():
            assert delivered.token not in text
            assert dead.token not in text
    assert await drain(sqs, queues.dlq_url) == []
    assert await total_depth(sqs, queues.url) == 0


IMPORTED = """
import atexit, json, sys
def loaded():
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"opentelemetry", "grpc",
        "google"})))
import relay, relay.cli, relay.worker, relay.producer
loaded()
atexit.register(loaded)
from relay.cli import main
main(sys.argv[1:])
"""


async def test_without_tracing_asked_for_relay_run_loads_nothing_of_opentelemetry(
    queues: Queues,
) -> None:
    """`import relay`, `relay.cli`, `relay.worker` and `relay.producer`, and a whole `relay
    run` (start-up, an empty queue, exit), load no OpenTelemetry, gRPC or protobuf module."""
    process = start(
        "run", "--queue-url", queues.url, "--exit-when-empty", "--http-port", "0", code=IMPORTED
    )
    code, out, err = await finish(process)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines == ["[]", "[]"], out


BLOCKED = "import sys; sys.modules['opentelemetry'] = None\n" + IMPORTED


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("run", "--queue-url", NOWHERE, "--tracing"), {}),
        (("run", "--queue-url", NOWHERE), {"RELAY_TRACING": "true"}),
        (("run", "--queue-url", NOWHERE), {"OTEL_TRACES_EXPORTER": "otlp"}),
        (("replay", "--dlq-url", NOWHERE, "--tracing"), {}),
    ],
    ids=["flag", "RELAY_TRACING", "OTEL_TRACES_EXPORTER", "replay"],
)
def test_tracing_asked_for_without_the_extra_is_exit_2_in_one_line(
    args: tuple[str, ...], env: dict[str, str]
) -> None:
    """With OpenTelemetry missing (its import blocked), asking for tracing by the flag, by
    RELAY_TRACING or by OTEL_TRACES_EXPORTER stops the command before anything starts: exit 2,
    one line naming the extra to install, no traceback."""
    process = start(*args, env=env, code=BLOCKED)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "OpenTelemetry is not installed" in lines[0]
    assert "pip install 'transfer-family-relay[otel]'" in lines[0]
    assert "Traceback" not in err
