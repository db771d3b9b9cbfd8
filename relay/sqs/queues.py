"""Queues as a whole: a queue and its DLQ, their settings and counts, and finding the DLQ."""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from relay.errors import ConfigError
from relay.sqs.client import SqsError, sqs_errors
from relay.sqs.outgoing import error_code
from relay.sqs.sizes import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

COUNT_ATTRIBUTES: Any = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


SOURCE_PAGES_MAX: Final = 100
"""Pages of ListDeadLetterSourceQueues read at most (1,000 queues a page)."""

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?")


def queue_name(queue_url: str) -> str:
    """The queue's name: the last part of its URL."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def queue_identity(queue_url: str) -> tuple[str, str] | None:
    """(account, name) of a queue URL `http(s)://HOST/ACCOUNT/NAME`, whichever host form it
    uses (`sqs.REGION.amazonaws.com`, the legacy `queue.amazonaws.com`); None when it is not
    one."""
    try:
        parts = urlsplit(queue_url)
    except ValueError:
        return None
    segments = parts.path.split("/")
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or len(segments) != 3
        or segments[0]
        or not segments[1].isdigit()
        or not segments[1].isascii()
        or _QUEUE_NAME.fullmatch(segments[2]) is None
    ):
        return None
    return segments[1], segments[2]


async def dead_letter_sources(client: SQSClient, dlq_url: str) -> list[str]:
    """The URLs of the queues whose redrive policy names this DLQ (ListDeadLetterSourceQueues,
    every page); `SqsError` when SQS would not say."""
    urls: list[str] = []
    token: str | None = None
    # Bounded: SOURCE_PAGES_MAX pages; SQS ends with a page without NextToken.
    for _ in range(SOURCE_PAGES_MAX):
        request: dict[str, Any] = {"QueueUrl": dlq_url, "MaxResults": 1000}
        if token:
            request["NextToken"] = token
        with sqs_errors():
            response = await client.list_dead_letter_source_queues(**request)
        urls += [str(url) for url in response.get("queueUrls", [])]
        token = response.get("NextToken")
        if not token:
            return urls
    raise SqsError("TooManySourceQueues", f"more than {len(urls)} source queues; not all read")


@dataclass(frozen=True, slots=True)
class QueuePair:
    """A source queue and its DLQ."""

    url: str
    dlq_url: str

    @property
    def name(self) -> str:
        """The source queue's name."""
        return queue_name(self.url)


async def create_queue_pair(
    client: SQSClient,
    name: str,
    *,
    max_receive_count: int,
    visibility_timeout_s: int = 30,
    fifo: bool = False,
) -> QueuePair:
    """Creates a queue and its DLQ with a redrive policy between them (the demo, the
    benchmark and the tests; production queues come from the CloudFormation template)."""
    suffix = ".fifo" if fifo else ""
    fifo_attributes: dict[Any, str] = {"FifoQueue": "true"} if fifo else {}
    with sqs_errors():
        dlq = await client.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=fifo_attributes)
        dlq_url = dlq["QueueUrl"]
        attributes = await client.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["QueueArn"]
        )
        redrive = {
            "deadLetterTargetArn": attributes["Attributes"]["QueueArn"],
            "maxReceiveCount": str(max_receive_count),
        }
        queue = await client.create_queue(
            QueueName=f"{name}{suffix}",
            Attributes={
                **fifo_attributes,
                "RedrivePolicy": json.dumps(redrive),
                "VisibilityTimeout": str(visibility_timeout_s),
            },
        )
    return QueuePair(url=queue["QueueUrl"], dlq_url=dlq_url)


async def queue_counts(client: SQSClient, queue_url: str) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of a queue; `SqsError` if unreadable."""
    with sqs_errors():
        response = await client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=COUNT_ATTRIBUTES
        )
    return {name: int(value) for name, value in response.get("Attributes", {}).items()}


async def queue_total(client: SQSClient, queue_url: str) -> int:
    """Every message the queue holds: visible, in flight and delayed."""
    return sum((await queue_counts(client, queue_url)).values())


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """What the worker needs to know of its queue and its DLQ at start-up."""

    dlq_url: str
    visibility_timeout_s: int
    max_receive_count: int | None
    """The redrive policy's `maxReceiveCount`, when there is one."""
    max_message_size: int
    """The source queue's `MaximumMessageSize`: the largest body a producer can put on it."""
    dlq_max_message_size: int
    """The DLQ's `MaximumMessageSize`: a dead-letter copy (body and attributes) must fit it."""


async def read_queue_attributes(client: SQSClient, queue_url: str, what: str) -> dict[str, str]:
    """All of a queue's attributes; `ConfigError` (exit 2) when it is missing or unreachable."""
    try:
        response = await client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    except ClientError as exc:
        raise ConfigError(f"{what} {queue_url}: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach SQS for {queue_url}: {exc}") from None
    return {str(k): str(v) for k, v in response.get("Attributes", {}).items()}


async def check_queue(client: SQSClient, queue_url: str, what: str) -> None:
    """`ConfigError` (exit 2) unless the queue exists and answers."""
    await read_queue_attributes(client, queue_url, what)


async def resolve_queue(client: SQSClient, queue_url: str, dlq_url: str | None) -> QueueSettings:
    """Checks the queue exists and finds its DLQ (`dlq_url`, else the redrive policy's)."""
    attributes = await read_queue_attributes(client, queue_url, "queue")
    redrive = _redrive_policy(attributes.get("RedrivePolicy"))
    if dlq_url is None:
        arn = redrive.get("deadLetterTargetArn")
        if not arn:
            raise ConfigError(
                f"queue {queue_url} has no RedrivePolicy: pass --dlq-url (RELAY_DLQ_URL)"
            )
        dlq_url = await _url_for_arn(client, str(arn))
    max_receive = redrive.get("maxReceiveCount")
    dlq_attributes = await read_queue_attributes(client, dlq_url, "DLQ")
    return QueueSettings(
        dlq_url=dlq_url,
        visibility_timeout_s=int(attributes.get("VisibilityTimeout", "30")),
        max_receive_count=int(max_receive) if max_receive is not None else None,
        max_message_size=_size(attributes),
        dlq_max_message_size=_size(dlq_attributes),
    )


def _size(attributes: Mapping[str, str]) -> int:
    return int(attributes.get("MaximumMessageSize", MAX_MESSAGE_BYTES))


def _redrive_policy(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        policy = json.loads(raw)
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) else {}


async def _url_for_arn(client: SQSClient, arn: str) -> str:
    parts = arn.split(":")
    if len(parts) != 6:
        raise ConfigError(f"RedrivePolicy names a malformed DLQ ARN: {arn}")
    account, name = parts[4], parts[5]
    try:
        response = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    except ClientError as exc:
        raise ConfigError(f"DLQ {arn} from the RedrivePolicy: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach SQS for the DLQ {arn}: {exc}") from None
    return response["QueueUrl"]
