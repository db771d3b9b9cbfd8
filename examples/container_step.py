"""A Transfer Family custom step whose work runs in a container (ECS, Batch) on asyncio.

The step's Lambda only starts the task, passing the custom-step event in `STEP_EVENT`; the task
does the long work and publishes the result through relay, which sends the callback.
"""

import asyncio
import json
import logging
import os
import sys
from typing import Any

from relay.producer import AsyncStepResultPublisher, Status, StepResult


async def convert(event: dict[str, Any]) -> None:
    """The step's work; raising means the file must not go on through the workflow."""
    key = event["fileLocation"]["key"]
    if key.endswith(".corrupt"):
        raise ValueError(f"{key}: cannot be converted")
    await asyncio.sleep(0)  # a real step would fetch, convert and store the file here


async def main() -> int:
    """Runs the step once and publishes SUCCESS or FAILURE; exit 1 if the step failed."""
    event = json.loads(os.environ["STEP_EVENT"])
    async with AsyncStepResultPublisher(os.environ["RELAY_QUEUE_URL"]) as publisher:
        try:
            await convert(event)
        except Exception:
            logging.exception("conversion failed")
            await publisher.publish(StepResult.from_event(event, Status.FAILURE))
            return 1
        await publisher.publish(StepResult.from_event(event, Status.SUCCESS))
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
