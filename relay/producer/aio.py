"""The asynchronous publisher, on aiobotocore (imported when it opens its client)."""

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.producer.publishing import CANCEL_S, Publishable, _Prepared, _Publishing
from relay.sqs.outgoing import MIN_CALL_S, OutgoingMessage

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient as AsyncSQSClient
else:
    AsyncSQSClient = Any


# --- the asynchronous publisher (aiobotocore) ----------------------------------------------


class AsyncStepResultPublisher(_Publishing):
    """`StepResultPublisher` on aiobotocore, for asyncio processors.

    Use it as `async with AsyncStepResultPublisher(url) as publisher:`, or call `aclose()`
    when done; the client is opened on first use. A `client` given is used and left open.
    With `deadline_s`, each call is cancelled at the deadline, whatever client makes it.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: AsyncSQSClient | None = None,
        attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        super().__init__(queue_url, attempts=attempts, backoff_s=backoff_s)
        self._client = client
        self._stack: contextlib.AsyncExitStack | None = None

    async def publish(self, result: Publishable, *, deadline_s: float | None = None) -> str:
        """Validates and sends one result; returns its SQS message id."""
        return (await self.publish_many([result], deadline_s=deadline_s))[0]

    async def publish_many(
        self, results: Iterable[Publishable], *, deadline_s: float | None = None
    ) -> list[str]:
        """Validates every result, then sends them in batches; returns their ids in order."""
        return await self._run(self._prepare(results), deadline_s)

    async def send(
        self, messages: Sequence[OutgoingMessage], *, deadline_s: float | None = None
    ) -> list[str]:
        """Sends prepared messages as they are, unvalidated: for tools and tests of bad input."""
        return await self._run(self._prepare_messages(messages), deadline_s)

    async def aclose(self) -> None:
        """Closes the client, if this publisher opened it."""
        stack, self._stack = self._stack, None
        if stack is not None:
            self._client = None
            await stack.aclose()

    async def __aenter__(self) -> "AsyncStepResultPublisher":
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> AsyncSQSClient:
        if self._client is None:
            # Imported here so that importing relay.producer never loads aiobotocore.
            from relay.sqs import open_sqs

            stack = contextlib.AsyncExitStack()
            client = await stack.enter_async_context(open_sqs())
            if self._client is None:
                self._client, self._stack = client, stack
            else:
                # Another task opened one while this one waited: keep that one.
                await stack.aclose()
        return self._client

    async def _run(self, prepared: _Prepared, deadline_s: float | None) -> list[str]:
        job = self._job(prepared, deadline_s)
        client = await self._open()
        for delay_s, requests in job.rounds():
            if delay_s:
                await asyncio.sleep(delay_s)
            for request in requests:
                left_s = job.time_left_s()
                if left_s is not None and left_s < MIN_CALL_S:
                    job.record_expired(request, "no time left for the call before the deadline")
                    continue
                try:
                    # Cancelling the call bounds botocore's timeouts and retries with it; it
                    # is cut a little early so that the cancelling, too, is done by the deadline.
                    async with asyncio.timeout(None if left_s is None else left_s - CANCEL_S):
                        response = await client.send_message_batch(
                            QueueUrl=self.queue_url,
                            Entries=request.entries,  # type: ignore[arg-type]
                        )
                except TimeoutError:
                    job.record_expired(request, "the call was still running at the deadline")
                except (ClientError, BotoCoreError) as exc:
                    job.record_error(request, exc)
                else:
                    job.record_response(request, response)
        return self._outcome(job, prepared)
