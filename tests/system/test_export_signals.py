"""`relay dlq export` as a process, interrupted: the export it was replacing stays as it was."""

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Queues
from tests.support import SQSClient, drain, eventually, make_steps, queue_depth
from tests.system.conftest import relay_subprocess, wait_exit
from tests.system.test_replay_signals import fill_dlq

pytestmark = pytest.mark.slow


async def test_sigint_during_export_leaves_the_existing_file(
    sqs: SQSClient, queues: Queues, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGINT while the DLQ is read: exit 1, the existing export byte for byte as it was, no
    temporary file left, and every message visible in the DLQ again."""
    bodies = [s.to_body() for s in make_steps(5, seed=81)]
    await fill_dlq(sqs, queues, bodies)
    out = tmp_path / "dlq.jsonl"
    out.write_bytes(b"the export of last week\n")
    # The default long poll: once all five are held, reading waits a second for more.
    process = relay_subprocess(
        "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out), "--json"
    )
    processes.append(process)

    async def all_held() -> bool:
        return (await queue_depth(sqs, queues.dlq_url))["in_flight"] == len(bodies)

    await eventually(all_held, timeout_s=20, what="the export holding every message")
    process.send_signal(signal.SIGINT)
    assert await wait_exit(process, timeout_s=20) == 1
    stdout, stderr = process.communicate(timeout=10)
    assert b"Traceback" not in stderr, stderr.decode()
    summary = json.loads(stdout)
    assert summary["stopped_by"].startswith("signal")
    assert (summary["complete"], summary["saved"]) == (False, False)
    assert out.read_bytes() == b"the export of last week\n"
    assert os.listdir(tmp_path) == ["dlq.jsonl"], "a temporary file was left"

    async def all_visible() -> bool:
        return (await queue_depth(sqs, queues.dlq_url))["visible"] == len(bodies)

    await eventually(all_visible, timeout_s=5, what="every message given back")
    assert Counter(m.body for m in await drain(sqs, queues.dlq_url)) == Counter(bodies)
