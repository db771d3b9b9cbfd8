"""The local stack on loopback, shared by the demo, the tests and the benchmark: moto's server
(SQS, and DynamoDB for the fleet's delivered-memory), the Transfer Family emulator in process,
and the standard AWS chain's variables pointing at them.

Everything listens on 127.0.0.1 only. moto comes from the dev extra (`pip install -e '.[dev]'`).
"""

import collections
import contextlib
import io
import json
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from relay.emulator import Faults, RunningEmulator, run_emulator
from relay.errors import ConfigError, RelayError

HOST: Final = "127.0.0.1"
REGION: Final = "us-east-1"


class SerialCalls:
    """WSGI middleware around one of moto's service apps: calls run one at a time, except
    receives, which run one at a time per queue; each call is counted by operation.

    moto's backends are not thread-safe and its server runs a thread per request: an SQS delete
    rebuilds the message list without a lock, so two concurrent DeleteMessageBatch calls can
    bring a deleted message back and a send beside a delete can lose one; two concurrent
    receives can hand out the same message; a DynamoDB conditional PutItem reads, checks and
    stores with nothing stopping another thread in between, where DynamoDB lets exactly one
    racing claim win. Receives get locks of their own so that a long poll never holds up sends
    and deletes, nor reads of another queue.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._changes = threading.Lock()
        self._receives: dict[str, threading.Lock] = {}
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Runs one request under the lock for its kind."""
        action = environ.get("HTTP_X_AMZ_TARGET", "") or environ.get("QUERY_STRING", "")
        lock = self._changes
        if action.endswith("ReceiveMessage"):
            # dict.setdefault is atomic: two threads never get different locks for one queue.
            lock = self._receives.setdefault(_queue_url(environ), threading.Lock())
        with lock:
            self.calls[str(action).rpartition(".")[2]] += 1
            return self._app(environ, start_response)


@dataclass(frozen=True, slots=True)
class MotoServer:
    """A running moto server: its URL, and the calls it has served by operation."""

    url: str
    calls: collections.Counter[str]


def _queue_url(environ: dict[str, Any]) -> str:
    """The QueueUrl of a JSON-protocol request; the body is put back for the app to read."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        return str(json.loads(body).get("QueueUrl", ""))
    except (ValueError, AttributeError):
        return ""


def require_moto() -> None:
    """ConfigError (exit 2) when moto's server is not installed."""
    try:
        import moto.moto_server.werkzeug_app  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the local stack needs moto's server, from the dev extra: "
            "pip install -e '.[dev]' (make run does)"
        ) from None


def keep_batch_trace_headers() -> None:
    """moto's SendMessageBatch drops each entry's `MessageSystemAttributes` (its SendMessage
    keeps them, and SQS keeps both): this keeps them, so a dead-letter copy's `AWSTraceHeader`
    reaches the DLQ on the local stack as it does on SQS (DESIGN §12). Idempotent."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.send_message_batch
    if getattr(original, "keeps_trace_headers", False):
        return

    def send_message_batch(
        self: Any, queue_name: str, entries: dict[str, dict[str, Any]]
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        # moto's batch sends each entry with `self.send_message`, in the entries' order; each
        # gets its entry's system attributes. SerialCalls runs one send at a time.
        system = iter([entry.get("MessageSystemAttributes") for entry in entries.values()])
        send_one = self.send_message

        def send_with_system(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("system_attributes", next(system, None))
            return send_one(*args, **kwargs)

        self.send_message = send_with_system
        try:
            return original(self, queue_name, entries)
        finally:
            del self.send_message

    send_message_batch.keeps_trace_headers = True  # type: ignore[attr-defined]
    SQSBackend.send_message_batch = send_message_batch  # type: ignore[method-assign]


@contextlib.contextmanager
def serve_moto(service: str = "sqs") -> Iterator[MotoServer]:
    """moto's server for one service (`sqs`, `dynamodb`) in this process, on a free loopback
    port."""
    require_moto()
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    if service == "sqs":
        keep_batch_trace_headers()

    # werkzeug logs every request; the caller's own output matters more.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # The service's own app: moto's dispatcher would scan its ~200 service packages per request.
    app = SerialCalls(create_backend_app(service))  # type: ignore[arg-type]
    server = make_server(HOST, 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name=f"moto-{service}",
        daemon=True,
    )
    thread.start()
    try:
        yield MotoServer(url=f"http://{HOST}:{server.server_port}", calls=app.calls)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _serve_until_told(conn: Connection, service: str) -> None:
    """The child process: serves until the parent says stop or goes away."""
    # Ctrl-C reaches the whole process group; when to stop is the parent's decision.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with serve_moto(service) as server:
        conn.send(server.url)
        with contextlib.suppress(EOFError, OSError):
            conn.recv()


@contextlib.contextmanager
def moto_process(service: str = "sqs", start_timeout_s: float = 30.0) -> Iterator[str]:
    """moto's server in a child process; its URL.

    moto spends milliseconds of CPU on each call, more as a queue grows; in the caller's process
    it would share one core (the GIL) with the worker and the emulator.
    """
    require_moto()
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=_serve_until_told, args=(child, service), name=f"relay-moto-{service}", daemon=True
    )
    process.start()
    child.close()
    try:
        if not parent.poll(start_timeout_s):
            raise RelayError(f"moto's server did not start within {start_timeout_s:g}s")
        yield str(parent.recv())
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        parent.close()
        process.join(5)
        if process.is_alive():
            process.terminate()
            process.join(5)


@contextlib.asynccontextmanager
async def local_emulator(
    *, faults: Faults | None = None, seed: int | None = None, accept_any: bool = False
) -> AsyncIterator[RunningEmulator]:
    """The Transfer Family emulator in this process's event loop, on a free loopback port."""
    async with run_emulator(HOST, 0, faults=faults, seed=seed, accept_any=accept_any) as running:
        yield running


def aws_environment(
    *,
    sqs_url: str | None = None,
    transfer_url: str | None = None,
    dynamodb_url: str | None = None,
) -> dict[str, str]:
    """The standard AWS chain's variables pointing at local endpoints, with fake credentials."""
    env = {
        "AWS_REGION": REGION,
        # boto3 and this botocore read the region from here only.
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    endpoints = {
        "AWS_ENDPOINT_URL_SQS": sqs_url,
        "AWS_ENDPOINT_URL_TRANSFER": transfer_url,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
    }
    env.update({name: url for name, url in endpoints.items() if url})
    return env


UNSET_FOR_LOOPBACK: Final = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
"""Variables that would send calls elsewhere than the local endpoints."""

ISOLATED_FILES: Final = {
    # A profile or endpoint in the user's ~/.aws must not send anything but to loopback.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def point_aws_at(variables: Mapping[str, str]) -> None:
    """Points this process's AWS chain at the local endpoints (the demo owns its process)."""
    for name in UNSET_FOR_LOOPBACK:
        os.environ.pop(name, None)
    os.environ.update(variables)
    os.environ.update(ISOLATED_FILES)
