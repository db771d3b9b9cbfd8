"""SQS's three hot calls through the lean client answer as aiobotocore's client does, against
moto's SQS server over real HTTP: receives (system and message attributes, binary ones too),
batch deletes and batch visibility changes (with entries SQS refuses), a missing queue, and a
closed port. Every other call goes to the aiobotocore client the lean one wraps."""

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError, EndpointConnectionError

from relay.aws import new_session
from relay.awsjson.signing import ClockOffset
from relay.sqs import SqsError, receive_messages, sqs_config
from relay.sqs.client import sqs_errors
from relay.sqs.lean import LeanSqs, open_hot_sqs, open_lean_sqs
from relay.sqs.receive import RECEIVE_SYSTEM_ATTRIBUTES
from tests.conftest import Queues, create_queue_pair
from tests.dedupe_support import JSON_10, serve

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

PATHS = pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])


@contextlib.asynccontextmanager
async def hot_client(lean: bool) -> AsyncIterator[SQSClient]:
    """The worker's SQS client, lean or aiobotocore's (AWS_ENDPOINT_URL_SQS: moto's server)."""
    async with open_hot_sqs(
        new_session(), lean=lean, max_pool_connections=4, clock=ClockOffset()
    ) as client:
        yield client


async def put_one(sqs: SQSClient, queue_url: str) -> None:
    """One message with string, number and binary message attributes and a trace header."""
    await sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='{"hello": "wörld"}',
        MessageAttributes={
            "relay-reason": {"DataType": "String", "StringValue": "validation"},
            "count": {"DataType": "Number", "StringValue": "7"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xffbytes"},
        },
        MessageSystemAttributes={
            "AWSTraceHeader": {
                "DataType": "String",
                "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            }
        },
    )


def comparable(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A ReceiveMessage answer without what differs between two queues and two receives."""
    kept = []
    for message in answer.get("Messages", []):
        attributes = {
            name: value
            for name, value in message.get("Attributes", {}).items()
            if name not in {"SentTimestamp", "ApproximateFirstReceiveTimestamp"}
        }
        kept.append(
            {
                "Body": message["Body"],
                "MD5OfBody": message["MD5OfBody"],
                "Attributes": attributes,
                "MessageAttributes": message.get("MessageAttributes"),
                "MD5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
            }
        )
    return kept


async def test_a_receive_answers_as_aiobotocores(sqs: SQSClient) -> None:
    """The same message received from two queues, lean and aiobotocore: the same body,
    system attributes and message attributes (a binary one as bytes), and relay reads both
    into the same `ReceivedMessage`."""
    first, second = await create_queue_pair(sqs), await create_queue_pair(sqs)
    await put_one(sqs, first.url)
    await put_one(sqs, second.url)
    request = {
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 1,
        "MessageSystemAttributeNames": RECEIVE_SYSTEM_ATTRIBUTES,
        "MessageAttributeNames": ["All"],
    }
    async with hot_client(lean=True) as lean, hot_client(lean=False) as aio:
        assert isinstance(lean, LeanSqs)
        lean_answer = await lean.receive_message(QueueUrl=first.url, **request)
        aio_answer = await aio.receive_message(QueueUrl=second.url, **request)

    assert comparable(lean_answer) == comparable(aio_answer)
    (message,) = comparable(lean_answer)
    assert message["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xffbytes"
    assert message["Attributes"]["AWSTraceHeader"].startswith("Root=1-5759e988")
    assert lean_answer["ResponseMetadata"]["HTTPStatusCode"] == 200


@PATHS
async def test_receive_messages_reads_the_message_on_either_client(
    lean: bool, sqs: SQSClient, queues: Queues
) -> None:
    """relay's receive reads the receive count, attributes and trace header on both clients."""
    await put_one(sqs, queues.url)
    async with hot_client(lean) as client:
        (message,) = await receive_messages(
            client, queues.url, max_messages=10, wait_s=1, visibility_timeout_s=30
        )
    assert message.body == '{"hello": "wörld"}'
    assert message.receive_count == 1
    assert message.attributes == {"relay-reason": "validation", "count": "7"}
    assert message.trace_header is not None


async def batch_answers(client: SQSClient, queues: Queues, sqs: SQSClient) -> dict[str, Any]:
    """A batch delete and a batch visibility change, each with one good entry and one SQS
    refuses, as the client answers them (without request ids)."""
    await sqs.send_message(QueueUrl=queues.url, MessageBody="one")
    await sqs.send_message(QueueUrl=queues.url, MessageBody="two")
    received = await sqs.receive_message(
        QueueUrl=queues.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    handles = [m["ReceiptHandle"] for m in received["Messages"]]
    while len(handles) < 2:  # moto may hand out one per receive
        more = await sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=1)
        handles += [m["ReceiptHandle"] for m in more.get("Messages", [])]
    visibility = await client.change_message_visibility_batch(
        QueueUrl=queues.url,
        Entries=[
            {"Id": "good", "ReceiptHandle": handles[0], "VisibilityTimeout": 5},
            {"Id": "bad", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 5},
        ],
    )
    deleted = await client.delete_message_batch(
        QueueUrl=queues.url,
        Entries=[
            {"Id": "good", "ReceiptHandle": handles[1]},
            {"Id": "bad", "ReceiptHandle": "not-a-handle"},
        ],
    )
    for answer in (visibility, deleted):
        answer.pop("ResponseMetadata")
    return {"visibility": visibility, "deleted": deleted}


async def test_batch_deletes_and_visibility_changes_answer_as_aiobotocores(
    sqs: SQSClient,
) -> None:
    """Entries done and entries refused (their code, message and sender fault) come back the
    same from both clients."""
    async with hot_client(lean=True) as lean, hot_client(lean=False) as aio:
        lean_answers = await batch_answers(lean, await create_queue_pair(sqs), sqs)
        aio_answers = await batch_answers(aio, await create_queue_pair(sqs), sqs)

    assert lean_answers == aio_answers
    assert [e["Id"] for e in lean_answers["deleted"]["Successful"]] == ["good"]
    assert [e["Id"] for e in lean_answers["deleted"].get("Failed", [])] in ([], ["bad"])


@PATHS
async def test_a_missing_queue_is_the_same_error_on_either_client(
    lean: bool, queues: Queues
) -> None:
    """A queue that does not exist: botocore's ClientError with SQS's query-compatible code,
    and relay's SqsError with the same code, whichever client made the call."""
    missing = queues.url.rsplit("/", 1)[0] + "/relay-no-such-queue"
    async with hot_client(lean) as client:
        with pytest.raises(ClientError) as raised:
            await client.delete_message_batch(
                QueueUrl=missing, Entries=[{"Id": "a", "ReceiptHandle": "x"}]
            )
        with pytest.raises(SqsError) as wrapped, sqs_errors():
            await client.receive_message(QueueUrl=missing, WaitTimeSeconds=0)

    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert wrapped.value.code == "AWS.SimpleQueueService.NonExistentQueue"
    assert wrapped.value.from_service


@PATHS
async def test_a_closed_port_is_the_same_transport_error_on_either_client(
    lean: bool, closed_port: int
) -> None:
    """Nothing listening: botocore's EndpointConnectionError after the retries, either way."""
    url = f"http://127.0.0.1:{closed_port}"
    session = new_session()
    async with contextlib.AsyncExitStack() as stack:
        aio = await stack.enter_async_context(
            session.create_client("sqs", endpoint_url=url, config=sqs_config())
        )
        client: Any = aio
        if lean:
            client = await stack.enter_async_context(open_lean_sqs(session, aio, endpoint_url=url))
        with pytest.raises(EndpointConnectionError):
            await client.delete_message_batch(
                QueueUrl=f"{url}/123456789012/q", Entries=[{"Id": "a", "ReceiptHandle": "x"}]
            )


async def test_other_calls_go_to_the_aiobotocore_client(queues: Queues) -> None:
    """The lean client makes only the three hot calls; the rest are aiobotocore's."""
    async with hot_client(lean=True) as client:
        attributes = await client.get_queue_attributes(
            QueueUrl=queues.url, AttributeNames=["QueueArn"]
        )
        assert isinstance(client, LeanSqs)
    assert attributes["Attributes"]["QueueArn"].endswith(queues.url.rsplit("/", 1)[1])


@PATHS
async def test_a_5xx_is_tried_again_as_botocores_standard_mode_does(lean: bool) -> None:
    """Two 500s, then an answer: three attempts in all and the answer, on either client (SQS
    keeps botocore's standard retries: three attempts)."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Amz-Target", ""))
        if len(seen) < 3:
            body = {"__type": "com.amazonaws.sqs#InternalError", "message": "try again"}
            return web.json_response(body, status=500, content_type=JSON_10)
        return web.json_response({"Successful": [{"Id": "a"}]}, content_type=JSON_10)

    session = new_session()
    async with serve(answer) as url, contextlib.AsyncExitStack() as stack:
        aio = await stack.enter_async_context(
            session.create_client("sqs", endpoint_url=url, config=sqs_config())
        )
        client: Any = aio
        if lean:
            client = await stack.enter_async_context(open_lean_sqs(session, aio, endpoint_url=url))
        deleted = await client.delete_message_batch(
            QueueUrl=f"{url}/123456789012/q", Entries=[{"Id": "a", "ReceiptHandle": "x"}]
        )

    assert deleted["Successful"] == [{"Id": "a"}]
    assert seen == ["AmazonSQS.DeleteMessageBatch"] * 3
