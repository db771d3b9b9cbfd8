"""The emulator's aiohttp app: the service on `POST /` (`SendWorkflowStepState`,
`ListExecutions`, `DescribeExecution`, picked by `X-Amz-Target`), an admin API on `/_emulator/`.

Admin API (JSON in and out, no SigV4; a bad request is HTTP 400 `{"error": "..."}`):

- `POST /_emulator/executions` `[{"workflow_id", "execution_id", "token"}, ...]` (or
  `{"executions": [...], "started_s_ago": S}`) → `{"registered": n, "waiting_tokens": total}`;
  all or none. Each execution starts (again) now, or S seconds ago, and is in progress until
  its steps are answered or its workflow's step timeout passes.
- `GET /_emulator/step-timeouts` → `{"default": S, "workflows": {workflow_id: S}}`;
  `PUT /_emulator/step-timeouts` with either member (0 to 1800 s) → the timeouts now in force.
- `GET /_emulator/faults` → the `Faults` as JSON; `PUT /_emulator/faults` with any subset of
  its members → the faults now in force.
- `GET /_emulator/calls[?since=N]` → `{"calls": [CallRecord...], "next": N'}`; pass `next`
  as `since` to read only newer calls.
- `GET /_emulator/stats` → `{"calls", "by_result" (callbacks), "by_operation", "executions",
  "in_progress", "waiting_tokens", "answered_tokens", "accept_any", "step_timeout_s",
  "step_timeouts"}`.
- `POST /_emulator/reset` → `{"reset": true}`: executions, step timeouts, calls, counters and
  faults cleared.
"""

import asyncio
import functools
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from relay.emulator.operations import decode_read
from relay.emulator.protocol import (
    JSON_CONTENT_TYPE,
    NO_FIELDS,
    SEND,
    SUCCESS_BODY,
    Answer,
    CallFields,
    GatewayError,
    ServiceError,
    check_protocol,
    check_signing_time,
    decode_call,
    http_date,
    operation_of,
    validate_call,
)
from relay.emulator.state import EmulatorState, ReadAnswer
from relay.errors import ConfigError

STATE_KEY: Final = web.AppKey("emulator_state", EmulatorState)
ADMIN_PREFIX: Final = "/_emulator"


def create_app(state: EmulatorState) -> web.Application:
    """Build the emulator's application around this state."""
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_post("/", _service)
    app.router.add_post(f"{ADMIN_PREFIX}/executions", _register_executions)
    app.router.add_get(f"{ADMIN_PREFIX}/step-timeouts", _get_step_timeouts)
    app.router.add_put(f"{ADMIN_PREFIX}/step-timeouts", _put_step_timeouts)
    app.router.add_get(f"{ADMIN_PREFIX}/faults", _get_faults)
    app.router.add_put(f"{ADMIN_PREFIX}/faults", _put_faults)
    app.router.add_get(f"{ADMIN_PREFIX}/calls", _list_calls)
    app.router.add_get(f"{ADMIN_PREFIX}/stats", _get_stats)
    app.router.add_post(f"{ADMIN_PREFIX}/reset", _reset)
    return app


async def _service(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    received_at = time.time()
    # A request routed to no operation is logged as a callback: what it most likely meant.
    operation = operation_of(request.headers.get("X-Amz-Target")) or SEND
    fields, answer, delay_ms = await _answer_call(request, state, operation)
    # Every answer carries the service's time (botocore and the other SDKs read it for skew).
    headers = {"Date": http_date(_service_now(state))}
    record = functools.partial(
        state.record_call,
        received_at=received_at,
        fields=fields,
        delay_ms=delay_ms,
        user_agent=request.headers.get("User-Agent"),
        operation=operation,
    )
    if isinstance(answer, GatewayError):
        record(http_status=answer.http_status, error_code=answer.code, request_id=None)
        return web.Response(
            status=answer.http_status, body=answer.body, content_type="text/html", headers=headers
        )
    request_id = str(uuid.uuid4())
    headers["x-amzn-RequestId"] = request_id
    listed: int | None = None
    if answer is None:
        status, body, code = 200, SUCCESS_BODY, None
    elif isinstance(answer, dict):
        status, body, code = 200, json.dumps(answer, separators=(",", ":")).encode(), None
        executions = answer.get("Executions")
        listed = len(executions) if isinstance(executions, list) else None
    else:
        extra, body = answer.render(state.faults.error_form)
        status, code = answer.http_status, answer.code
        headers.update(extra)
    record(http_status=status, error_code=code, request_id=request_id, listed=listed)
    return web.Response(status=status, body=body, content_type=JSON_CONTENT_TYPE, headers=headers)


async def _answer_call(
    request: web.Request, state: EmulatorState, operation: str
) -> tuple[CallFields, Answer | ReadAnswer, float]:
    """Protocol checks, the operation's field rules, injected latency, then the state's
    decision."""
    headers = request.headers
    amz_date = headers.get("X-Amz-Date") or headers.get("Date")
    rejected = check_protocol(
        content_type=request.content_type,
        target=headers.get("X-Amz-Target"),
        authorization=headers.get("Authorization"),
        amz_date=amz_date,
    ) or check_signing_time(amz_date or "", _service_now(state))
    if rejected is not None:
        return NO_FIELDS, rejected, 0.0
    body = await request.read()
    if operation != SEND:
        document, read = decode_read(operation, body)
        fields = CallFields(
            workflow_id=_text(document.get("WorkflowId")),
            execution_id=_text(document.get("ExecutionId")),
        )
        if isinstance(read, ServiceError):
            return fields, read, 0.0
        delay_ms = await _delay(state)
        return fields, state.read(operation, read), delay_ms
    decoded = decode_call(body)
    if isinstance(decoded, ServiceError):
        return NO_FIELDS, decoded, 0.0
    call = validate_call(decoded)
    if isinstance(call, ServiceError):
        return decoded, call, 0.0
    delay_ms = await _delay(state)
    return decoded, state.decide(call), delay_ms


async def _delay(state: EmulatorState) -> float:
    """Sleeps the injected latency; returns it."""
    delay_ms = state.sample_delay_ms()
    if delay_ms > 0.0:
        await asyncio.sleep(delay_ms / 1000.0)
    return delay_ms


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _service_now(state: EmulatorState) -> datetime:
    """The emulated service's clock: real time plus the `clock_skew_s` fault."""
    return datetime.fromtimestamp(time.time() + state.faults.clock_skew_s, UTC)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _read_json(request: web.Request) -> object:
    try:
        return await request.json()
    except ValueError as error:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"request body is not JSON: {error}"}),
            content_type="application/json",
        ) from error


async def _register_executions(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    document = await _read_json(request)
    started_s_ago: object = 0.0
    if isinstance(document, dict):
        started_s_ago = document.get("started_s_ago", 0.0)
        document = document.get("executions")
    if isinstance(started_s_ago, bool) or not isinstance(started_s_ago, int | float):
        return _bad_request("started_s_ago must be a number of seconds >= 0")
    if not isinstance(document, list):
        return _bad_request("expected a list of {workflow_id, execution_id, token}")
    steps: list[tuple[str, str, str]] = []
    for item in document:
        values = (
            [item.get(key) for key in ("workflow_id", "execution_id", "token")]
            if isinstance(item, dict)
            else []
        )
        if len(values) != 3 or not all(isinstance(value, str) for value in values):
            return _bad_request(
                f"each execution needs string workflow_id, execution_id, token: {item!r}"
            )
        steps.append((str(values[0]), str(values[1]), str(values[2])))
    try:
        registered = state.register_many(steps, started_s_ago=float(started_s_ago))
    except ValueError as error:
        return _bad_request(str(error))
    return web.json_response({"registered": registered, "waiting_tokens": state.waiting_tokens})


def _step_timeouts(state: EmulatorState) -> dict[str, object]:
    return {
        "default": state.executions.default_timeout_s,
        "workflows": state.executions.timeouts(),
    }


async def _get_step_timeouts(request: web.Request) -> web.Response:
    return web.json_response(_step_timeouts(request.app[STATE_KEY]))


async def _put_step_timeouts(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    document = await _read_json(request)
    if not isinstance(document, dict) or set(document) - {"default", "workflows"}:
        return _bad_request('expected {"default": seconds, "workflows": {workflow_id: seconds}}')
    workflows = document.get("workflows", {})
    if not isinstance(workflows, dict):
        return _bad_request("workflows must map workflow ids to seconds")
    given: list[tuple[str | None, object]] = list(workflows.items())
    if "default" in document:
        given.append((None, document["default"]))
    changes: list[tuple[str | None, float]] = []
    for workflow_id, seconds in given:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            return _bad_request("a step timeout is a number of seconds")
        changes.append((workflow_id, float(seconds)))
    try:
        for workflow_id, timeout_s in changes:  # all checked first, so all or none apply
            state.check_step_timeout(workflow_id, timeout_s)
    except ValueError as error:
        return _bad_request(str(error))
    for workflow_id, timeout_s in changes:
        state.set_step_timeout(workflow_id, timeout_s)
    return web.json_response(_step_timeouts(state))


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].faults.to_json())


async def _put_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    changes = await _read_json(request)
    if not isinstance(changes, dict):
        return _bad_request("expected a JSON object of fault settings")
    try:
        state.set_faults(state.faults.updated(changes))
    except ConfigError as error:
        return _bad_request(str(error))
    return web.json_response(state.faults.to_json())


async def _list_calls(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return _bad_request("since must be an integer log index")
    calls = state.calls_since(since)
    return web.json_response(
        {"calls": [call.to_json() for call in calls], "next": state.call_count}
    )


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"reset": True})
