"""`relay.producer` in a fresh interpreter: a Lambda can use it without the worker's stack."""

import json
import subprocess
import sys

HEAVY = ("aiohttp", "aiobotocore", "structlog", "click", "prometheus_client", "rich", "tenacity")

CHECK = f"""
import json, sys
import relay.producer
from relay.producer import InvalidMessage, Status, StepResult, StepResultPublisher, custom_step
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def test_importing_the_producer_loads_neither_aiohttp_nor_aiobotocore() -> None:
    """`import relay.producer` leaves aiohttp, aiobotocore and the worker's other dependencies
    out of `sys.modules`."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
