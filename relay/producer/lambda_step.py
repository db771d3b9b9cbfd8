"""`custom_step`: a Lambda handler that Transfer Family invokes as a custom step."""

import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar, overload

from relay.errors import ConfigError
from relay.message import Status, StepResult, short_token
from relay.producer.publishing import QUEUE_URL_ENV, logger
from relay.producer.sync import StepResultPublisher

LAMBDA_MARGIN_SHARE: Final = 0.1
LAMBDA_MARGIN_MAX_S: Final = 1.0
"""`custom_step` keeps this share of the invocation's remaining time, at most this many seconds,
for after publishing: raising `PublishError`, logging, Lambda's error report, and the slack
botocore's timeouts need (they bound each wait on the socket, not the whole call). A tenth
leaves a short invocation most of its time (0.5 s left: 0.45 s to publish); a second is
ample once a minute or more is left."""


# --- the custom-step decorator -------------------------------------------------------------

E = TypeVar("E", bound=Mapping[str, Any])
R = TypeVar("R")
OnError = Literal["publish", "raise"]

_shared: dict[str, StepResultPublisher] = {}
_shared_lock = threading.Lock()


def shared_publisher(queue_url: str | None = None) -> StepResultPublisher:
    """One publisher per queue per process, made on first use, so that a Lambda container
    reuses its client; the queue defaults to `RELAY_QUEUE_URL`, read now."""
    url = queue_url or os.environ.get(QUEUE_URL_ENV, "")
    if not url:
        raise ConfigError(
            f"no queue for step results: set {QUEUE_URL_ENV} or pass custom_step(queue_url=...)"
        )
    with _shared_lock:
        publisher = _shared.get(url)
        if publisher is None:
            publisher = _shared[url] = StepResultPublisher(url)
        return publisher


@overload
def custom_step(handler: Callable[[E, Any], R], /) -> Callable[[E, Any], R | None]: ...


@overload
def custom_step(
    handler: None = None,
    /,
    *,
    queue_url: str | None = None,
    on_error: OnError = "publish",
    publisher: StepResultPublisher | None = None,
) -> Callable[[Callable[[E, Any], R]], Callable[[E, Any], R | None]]: ...


def custom_step(
    handler: Callable[[E, Any], R] | None = None,
    /,
    *,
    queue_url: str | None = None,
    on_error: OnError = "publish",
    publisher: StepResultPublisher | None = None,
) -> Any:
    """Wraps a custom step's `handler(event, context)`: return publishes SUCCESS, raise FAILURE.

    Used bare (`@custom_step`) or with options. The event must be the one Transfer Family
    hands the step; one that is not raises `InvalidMessage` before the handler runs.

    - The handler returns: SUCCESS is published and its return value returned.
    - It raises: FAILURE is published, the exception logged (token shortened) and None
      returned, so Lambda's own retries do not run a step that has been answered. With
      `on_error="raise"` nothing is published and the exception propagates (Lambda retries).
    - Publishing fails after its retries: `PublishError` propagates, so the invocation fails
      visibly. Under Lambda (a `context` with `get_remaining_time_in_millis`) the retries stop
      before the invocation's time runs out, keeping a margin (`LAMBDA_MARGIN_SHARE` of it, at
      most `LAMBDA_MARGIN_MAX_S`), so the error is raised, not cut off by the timeout.
    - The queue is `queue_url`, else `RELAY_QUEUE_URL` (read on each call; missing:
      `ConfigError`); `publisher` replaces the process-wide one (tests, custom clients).
    """
    if on_error not in ("publish", "raise"):
        raise ValueError(f"on_error must be 'publish' or 'raise', not {on_error!r}")

    def decorate(function: Callable[[E, Any], R]) -> Callable[[E, Any], R | None]:
        @functools.wraps(function)
        def run_step(event: E, context: Any) -> R | None:
            success = StepResult.from_event(event, Status.SUCCESS)
            target = publisher if publisher is not None else shared_publisher(queue_url)
            try:
                value = function(event, context)
            except Exception:
                if on_error == "raise":
                    raise
                failure = dataclasses.replace(success, status=Status.FAILURE)
                message_id = target.publish(failure, deadline_s=publish_deadline_s(context))
                logger.exception(
                    "custom step failed: FAILURE published "
                    "(workflow %s, execution %s, token %s, message %s)",
                    failure.workflow_id,
                    failure.execution_id,
                    short_token(failure.token),
                    message_id,
                )
                return None
            message_id = target.publish(success, deadline_s=publish_deadline_s(context))
            logger.info(
                "custom step done: SUCCESS published (workflow %s, execution %s, token %s, "
                "message %s)",
                success.workflow_id,
                success.execution_id,
                short_token(success.token),
                message_id,
            )
            return value

        return run_step

    return decorate if handler is None else decorate(handler)


def publish_deadline_s(context: Any) -> float | None:
    """Seconds a publish may take in a Lambda invocation: its remaining time less the margin;
    None for a context that does not tell (not Lambda, a test's None)."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return None
    left_s = float(remaining_ms()) / 1000
    return left_s - min(LAMBDA_MARGIN_MAX_S, LAMBDA_MARGIN_SHARE * max(left_s, 0.0))
