"""The emulator's aiohttp app: `SendWorkflowStepState` on `POST /`, an admin API on `/_emulator/`.

Admin API (JSON in and out, no SigV4; a bad request is HTTP 400 `{"error": "..."}`):

- `POST /_emulator/executions` `[{"workflow_id", "execution_id", "token"}, ...]` (or
  `{"executions": [...]}`) → `{"registered": n, "waiting_tokens": total}`; all or none.
- `GET /_emulator/faults` → the `Faults` as JSON; `PUT /_emulator/faults` with any subset of
  its members → the faults now in force.
- `GET /_emulator/calls[?since=N]` → `{"calls": [CallRecord...], "next": N'}`; pass `next`
  as `since` to read only newer calls.
- `GET /_emulator/stats` → `{"calls", "by_result", "executions", "waiting_tokens",
  "answered_tokens", "accept_any"}`.
- `POST /_emulator/reset` → `{"reset": true}`: executions, calls, counters and faults cleared.
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from relay.emulator.protocol import (
    JSON_CONTENT_TYPE,
    NO_FIELDS,
    SUCCESS_BODY,
    Answer,
    CallFields,
    GatewayError,
    ServiceError,
    check_protocol,
    check_signing_time,
    decode_call,
    http_date,
    validate_call,
)
from relay.emulator.state import EmulatorState
from relay.errors import ConfigError

STATE_KEY: Final = web.AppKey("emulator_state", EmulatorState)
ADMIN_PREFIX: Final = "/_emulator"


def create_app(state: EmulatorState) -> web.Application:
    """Build the emulator's application around this state."""
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_post("/", _send_workflow_step_state)
    app.router.add_post(f"{ADMIN_PREFIX}/executions", _register_executions)
    app.router.add_get(f"{ADMIN_PREFIX}/faults", _get_faults)
    app.router.add_put(f"{ADMIN_PREFIX}/faults", _put_faults)
    app.router.add_get(f"{ADMIN_PREFIX}/calls", _list_calls)
    app.router.add_get(f"{ADMIN_PREFIX}/stats", _get_stats)
    app.router.add_post(f"{ADMIN_PREFIX}/reset", _reset)
    return app


async def _send_workflow_step_state(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    received_at = time.time()
    fields, answer, delay_ms = await _answer_call(request, state)
    # Every answer carries the service's time (botocore and the other SDKs read it for skew).
    headers = {"Date": http_date(_service_now(state))}
    if isinstance(answer, GatewayError):
        state.record_call(
            received_at=received_at,
            fields=fields,
            http_status=answer.http_status,
            error_code=answer.code,
            delay_ms=delay_ms,
            request_id=None,
            user_agent=request.headers.get("User-Agent"),
        )
        return web.Response(
            status=answer.http_status, body=answer.body, content_type="text/html", headers=headers
        )
    request_id = str(uuid.uuid4())
    headers["x-amzn-RequestId"] = request_id
    if answer is None:
        status, body, code = 200, SUCCESS_BODY, None
    else:
        extra, body = answer.render(state.faults.error_form)
        status, code = answer.http_status, answer.code
        headers.update(extra)
    state.record_call(
        received_at=received_at,
        fields=fields,
        http_status=status,
        error_code=code,
        delay_ms=delay_ms,
        request_id=request_id,
        user_agent=request.headers.get("User-Agent"),
    )
    return web.Response(status=status, body=body, content_type=JSON_CONTENT_TYPE, headers=headers)


async def _answer_call(
    request: web.Request, state: EmulatorState
) -> tuple[CallFields, Answer, float]:
    """Protocol checks, field rules, injected latency, then the state's decision."""
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
    decoded = decode_call(await request.read())
    if isinstance(decoded, ServiceError):
        return NO_FIELDS, decoded, 0.0
    call = validate_call(decoded)
    if isinstance(call, ServiceError):
        return decoded, call, 0.0
    delay_ms = state.sample_delay_ms()
    if delay_ms > 0.0:
        await asyncio.sleep(delay_ms / 1000.0)
    return decoded, state.decide(call), delay_ms


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
    if isinstance(document, dict):
        document = document.get("executions")
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
        registered = state.register_many(steps)
    except ValueError as error:
        return _bad_request(str(error))
    return web.json_response({"registered": registered, "waiting_tokens": state.waiting_tokens})


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
