"""`relay emulator` as a process, called by a plain boto3 client."""

import os
import re
import signal
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import make_steps


def test_relay_emulator_accept_any_answers_once_then_already_completed() -> None:
    """`relay emulator --port 0 --accept-any` answers a boto3 call with 200 and the same call
    again with InvalidRequestException, and exits 0 on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "emulator", "--port", "0", "--accept-any"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        client = boto3.client(
            "transfer",
            endpoint_url=match.group(1),
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        step = make_steps(1, seed=41)[0]
        response = client.send_workflow_step_state(**step.to_request())
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        with pytest.raises(ClientError) as caught:
            client.send_workflow_step_state(**step.to_request())
        assert caught.value.response["Error"]["Code"] == "InvalidRequestException"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0
