"""`relay emulator` as a process, called by a plain boto3 client."""

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import make_steps


@contextlib.contextmanager
def emulator_process(*flags: str) -> Iterator[Any]:
    """`relay emulator --port 0 FLAGS` running; a boto3 transfer client for it. On the way
    out it gets SIGTERM and must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "emulator", "--port", "0", *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line + process.communicate(timeout=10)[1]
        client = boto3.client(
            "transfer",
            endpoint_url=match.group(1),
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        yield client
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_relay_emulator_accept_any_answers_once_then_already_completed() -> None:
    """`relay emulator --port 0 --accept-any` answers a boto3 call with 200 and the same call
    again with InvalidRequestException, and exits 0 on SIGTERM."""
    with emulator_process("--accept-any") as client:
        step = make_steps(1, seed=41)[0]
        response = client.send_workflow_step_state(**step.to_request())
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(ClientError) as caught:
            client.send_workflow_step_state(**step.to_request())
        assert caught.value.response["Error"]["Code"] == "InvalidRequestException"


def test_relay_emulator_starts_executions_pages_them_and_times_them_out_from_flags() -> None:
    """`--execution` starts executions a boto3 paginator lists one a page (`--page-size 1`);
    `--workflow-step-timeout W=0` ends one workflow's at once; `--deny-operation` refuses
    DescribeExecution naming the permission."""
    one, two = make_steps(2, seed=42)
    [ended] = make_steps(1, workflow="w-eeeeeeeeeeeeeeeee", seed=43)
    flags = [f"--execution={s.workflow_id}:{s.execution_id}:{s.token}" for s in (one, two, ended)]
    with emulator_process(
        *flags,
        "--page-size=1",
        f"--workflow-step-timeout={ended.workflow_id}=0",
        "--deny-operation=DescribeExecution",
    ) as client:
        pages = list(client.get_paginator("list_executions").paginate(WorkflowId=one.workflow_id))
        assert [[e["ExecutionId"] for e in p["Executions"]] for p in pages] == [
            [one.execution_id],
            [two.execution_id],
        ]
        assert client.list_executions(WorkflowId=ended.workflow_id)["Executions"] == []
        with pytest.raises(ClientError) as caught:
            client.describe_execution(WorkflowId=one.workflow_id, ExecutionId=one.execution_id)
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "transfer:DescribeExecution" in caught.value.response["Error"]["Message"]


def test_relay_emulator_refuses_a_malformed_execution_flag() -> None:
    """A `--execution` that is not WORKFLOW_ID:EXECUTION_ID:TOKEN is exit 2 with one line."""
    result = subprocess.run(
        [sys.executable, "-m", "relay", "emulator", "--execution", "w-1:e"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "WORKFLOW_ID:EXECUTION_ID:TOKEN" in result.stderr
