"""The synchronous publisher, on botocore alone (every Lambda runtime ships it)."""

import os
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from relay.producer.publishing import (
    BOUNDED_CALL_S,
    CALL_ATTEMPTS,
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    WORST_CALL_S,
    Publishable,
    SyncSQSClient,
    _Prepared,
    _Publishing,
)
from relay.sqs.outgoing import MIN_CALL_S, OutgoingMessage

# --- the synchronous publisher (botocore) --------------------------------------------------


def new_sqs_client() -> SyncSQSClient:
    """A botocore SQS client from the standard AWS chain (AWS_ENDPOINT_URL_SQS honoured).

    Like `relay.aws`, it takes the region from `AWS_REGION` when nothing else set one.
    """
    return _sqs_client(_botocore_session())


def _botocore_session() -> Any:
    import botocore.session

    session = botocore.session.get_session()
    region = os.environ.get("AWS_REGION")
    if region and not session.get_config_variable("region"):
        session.set_config_variable("region", region)
    return session


def _sqs_client(
    session: Any,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    attempts: int = CALL_ATTEMPTS,
) -> SyncSQSClient:
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return session.create_client("sqs", config=config)


class StepResultPublisher(_Publishing):
    """Publishes step results to one queue with botocore; a result SQS did not accept is never
    reported as sent.

    Give it a botocore SQS `client` to choose endpoints, credentials or retries; one made here
    is closed by `close()` (or leaving a `with` block), one given is left open. With
    `deadline_s`, calls through a client made here are also cut to fit the time left; a client
    given keeps its own timeouts, and only no new attempt starts past the deadline.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: SyncSQSClient | None = None,
        attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        super().__init__(queue_url, attempts=attempts, backoff_s=backoff_s)
        self._owns_client = client is None
        self._session = _botocore_session() if client is None else None
        self.client = _sqs_client(self._session) if client is None else client
        self._bounded: dict[float, SyncSQSClient] = {}
        """Clients of one short attempt, by the seconds their timeouts add up to."""

    def publish(self, result: Publishable, *, deadline_s: float | None = None) -> str:
        """Validates and sends one result; returns its SQS message id.

        Raises `InvalidMessage` (nothing sent) or `PublishError` (SQS did not accept it, or
        not within `deadline_s` seconds from now).
        """
        return self.publish_many([result], deadline_s=deadline_s)[0]

    def publish_many(
        self, results: Iterable[Publishable], *, deadline_s: float | None = None
    ) -> list[str]:
        """Validates every result, then sends them in batches; returns their ids in order.

        Nothing is sent if any result is invalid (`InvalidMessage`, naming the field). Entries
        SQS fails through no fault of ours are retried with a short backoff; if any result is
        still not accepted, `PublishError` lists each one (the others were sent). With
        `deadline_s`, it returns or raises within that many seconds from now: no attempt
        starts that could not make a call before then.
        """
        prepared = self._prepare(results)
        return self._run(prepared, deadline_s)

    def send(
        self, messages: Sequence[OutgoingMessage], *, deadline_s: float | None = None
    ) -> list[str]:
        """Sends prepared messages as they are, unvalidated: for tools and tests of bad input.

        Build them with `message_for`. Retries, deadline and `PublishError` as in
        `publish_many`.
        """
        return self._run(self._prepare_messages(messages), deadline_s)

    def close(self) -> None:
        """Closes the clients, if this publisher made them."""
        if self._owns_client:
            self.client.close()
            for client in self._bounded.values():
                client.close()
            self._bounded.clear()

    def __enter__(self) -> "StepResultPublisher":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, prepared: _Prepared, deadline_s: float | None) -> list[str]:
        job = self._job(prepared, deadline_s)
        for delay_s, requests in job.rounds():
            if delay_s:
                time.sleep(delay_s)
            for request in requests:
                left_s = job.time_left_s()
                if left_s is not None and left_s < MIN_CALL_S:
                    job.record_expired(request, "no time left for the call before the deadline")
                    continue
                try:
                    response = self._client_within(left_s).send_message_batch(
                        QueueUrl=self.queue_url, Entries=request.entries
                    )
                except (ClientError, BotoCoreError) as exc:
                    job.record_error(request, exc)
                else:
                    job.record_response(request, response)
        return self._outcome(job, prepared)

    def _client_within(self, left_s: float | None) -> SyncSQSClient:
        """A client whose one call cannot outlast `left_s` seconds, where this publisher can
        make one; botocore has no per-call timeout, so a client of shorter ones is made."""
        if left_s is None or left_s >= WORST_CALL_S or self._session is None:
            return self.client
        budget_s = max((b for b in BOUNDED_CALL_S if b <= left_s), default=BOUNDED_CALL_S[0])
        client = self._bounded.get(budget_s)
        if client is None:
            connect_s = min(CONNECT_TIMEOUT_S, budget_s / 2)
            client = self._bounded[budget_s] = _sqs_client(
                self._session,
                connect_timeout_s=connect_s,
                read_timeout_s=budget_s - connect_s,
                attempts=1,
            )
        return client
