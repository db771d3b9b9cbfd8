"""For step processors: publish step results to relay's queue, checked where they are made.

A processor hands each result to a publisher; it is validated with the worker's own parser
before anything is sent, so a wrong field raises `InvalidMessage` here, in the processor,
instead of becoming a `validation` dead-letter later (DESIGN §9)::

    from relay.producer import Status, StepResult, StepResultPublisher

    publisher = StepResultPublisher(queue_url)
    publisher.publish(StepResult.from_event(event, Status.SUCCESS))

- `StepResultPublisher` is synchronous, on botocore alone (every Lambda runtime ships it);
  `AsyncStepResultPublisher` is its twin on aiobotocore, for asyncio processors.
- `custom_step` wraps a Lambda handler that Transfer Family invokes as a custom step:
  return publishes SUCCESS, raise publishes FAILURE, and retries stop before the invocation's
  time runs out.
- Every publishing call takes `deadline_s`: no retry starts, and no call runs, past it.

Importing this module loads neither aiohttp nor aiobotocore: the async publisher imports
aiobotocore when it opens its client.
"""

from relay.message import InvalidMessage, Status, StepResult
from relay.producer.aio import AsyncStepResultPublisher
from relay.producer.lambda_step import custom_step, publish_deadline_s, shared_publisher
from relay.producer.publishing import (
    QUEUE_URL_ENV,
    Publishable,
    PublishError,
    PublishFailure,
    message_for,
)
from relay.producer.sync import StepResultPublisher, new_sqs_client
from relay.sqs.outgoing import OutgoingMessage

__all__ = [
    "QUEUE_URL_ENV",
    "AsyncStepResultPublisher",
    "InvalidMessage",
    "OutgoingMessage",
    "PublishError",
    "PublishFailure",
    "Publishable",
    "Status",
    "StepResult",
    "StepResultPublisher",
    "custom_step",
    "message_for",
    "new_sqs_client",
    "publish_deadline_s",
    "shared_publisher",
]
