"""EMF on a real run (DESIGN §6): the worker against moto's SQS server and the emulator, with
every outcome it can produce in one run; every document is checked by tests/emf_spec.py, a
validator written from the CloudWatch user guide's "Specification: Embedded metric format"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
and the sums of the documents are what the worker counted and the emulator and queues saw.
"""

import asyncio
import collections
import dataclasses
import io
from typing import Any

from aiobotocore.session import get_session

from relay.emf import EMF_METRICS
from relay.emulator import FailureKind, Faults
from relay.message import Status, StepResult
from relay.worker import open_worker
from tests.conftest import Emulator, Queues
from tests.emf_spec import check_against_table, read_documents
from tests.integration.worker_support import fast_config, register, sample
from tests.support import SQSClient, drain, make_steps, send_bodies, total_depth

TERMINAL = ("delivered", "duplicate", "conflict", "dead_lettered")


async def _answer_directly(emulator: Emulator, step: StepResult) -> None:
    """Answers a step before relay does, so relay's call is an InvalidRequestException."""
    async with get_session().create_client("transfer", endpoint_url=emulator.url) as client:
        await client.send_workflow_step_state(**step.to_request())


def _sums(documents: list[dict[str, Any]], name: str) -> float:
    """A count metric summed over every document that carries it."""
    return sum(doc[name] for doc in documents if name in doc)


async def test_emf_sums_equal_what_the_worker_the_emulator_and_the_queues_saw(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """On a run with delivered, duplicate, conflict, released and four dead-letter reasons, every
    document is valid EMF and the sums per outcome and reason, the calls, throttles and latency
    values equal what the worker counted, the emulator answered and the queues hold."""
    good = make_steps(150, seed=31)
    unknown = make_steps(4, seed=32)
    answered = make_steps(2, seed=33)
    denied = make_steps(2, seed=34)
    register(emulator.state, good + answered + denied)
    for step in answered:
        await _answer_directly(emulator, step)
    calls_before = len(emulator.state.calls)
    emulator.state.set_faults(
        Faults(
            throttle_rps=60,
            throttle_burst=10,
            error_rate=0.1,
            error_kinds=(FailureKind.SERVICE_UNAVAILABLE,),
            deny_workflows=frozenset({denied[0].workflow_id}),
        )
    )
    bodies = (
        [s.to_body() for s in good]
        + [s.to_body() for s in good[:5]]  # copies: duplicates
        + [dataclasses.replace(s, status=Status.FAILURE).to_body() for s in good[5:8]]  # conflicts
        + [s.to_body() for s in unknown]  # not_found
        + [s.to_body() for s in answered]  # invalid_request
        + [s.to_body() for s in denied]  # released, then access_denied at --max-receives
        + [f'{{"broken": {i}' for i in range(4)]  # validation
    )
    await send_bodies(sqs, queues.url, bodies)
    stream = io.StringIO()

    config = fast_config(queues.url, max_receives=3, max_attempts=2, emf_interval_s=0.1)
    async with open_worker(config, emf_stream=stream) as worker:
        await asyncio.wait_for(worker.run(handle_signals=False), 90)

    documents = read_documents(stream.getvalue())
    for document in documents:
        check_against_table(document, EMF_METRICS, namespace="relay", queue_name=queues.name)
    assert len({doc["_aws"]["Timestamp"] for doc in documents}) >= 2, "one flush: no deltas"

    # Messages: the worker's counter, outcome by outcome and reason by reason.
    emf: collections.Counter[tuple[str, str]] = collections.Counter()
    for doc in documents:
        if "Messages" in doc:
            emf[(doc["Outcome"], doc["Reason"])] += doc["Messages"]
    counted = {(o, r or "none"): n for (o, r), n in worker.metrics.outcome_counts().items() if n}
    assert dict(emf) == counted
    for expected in [
        ("delivered", "none"),
        ("duplicate", "none"),
        ("conflict", "conflict"),
        ("released", "none"),
        ("dead_lettered", "validation"),
        ("dead_lettered", "not_found"),
        ("dead_lettered", "invalid_request"),
        ("dead_lettered", "access_denied"),
    ]:
        assert emf[expected] > 0, f"the run produced no {expected}: the test proves less"

    # What the emulator answered and the queues hold.
    calls = emulator.state.calls[calls_before:]
    successes = [c for c in calls if c.http_status == 200]
    assert sum(n for (o, _), n in emf.items() if o == "delivered") == len(successes)
    dead = await drain(sqs, queues.dlq_url)
    by_reason = collections.Counter(m.attributes["relay-reason"] for m in dead)
    assert by_reason == collections.Counter(
        {r: n for (o, r), n in emf.items() if o in ("dead_lettered", "conflict")}
    )
    assert sum(n for (o, _), n in emf.items() if o in TERMINAL) == len(bodies)
    assert await total_depth(sqs, queues.url) == 0

    # Calls, throttles, retries and every latency value.
    assert _sums(documents, "CallbackAttempts") == len(calls)
    throttled = [c for c in calls if c.error_code == "ThrottlingException"]
    assert _sums(documents, "Throttles") == len(throttled)
    assert _sums(documents, "Retries") == sample(worker, "relay_callback_retries_total")
    latencies = [v for doc in documents for v in doc.get("CallbackLatency", [])]
    assert len(latencies) == len(calls)
    end_to_end = [v for doc in documents for v in doc.get("EndToEndLatency", [])]
    assert len(end_to_end) == len(successes)
