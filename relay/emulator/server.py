"""Serving the emulator: an async context manager for tests and tools, `serve` for the CLI."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from relay.emulator.app import create_app
from relay.emulator.faults import Faults
from relay.emulator.state import EmulatorState
from relay.lifecycle import Shutdown, handling_signals

DEFAULT_HOST: Final = "127.0.0.1"
# In-flight calls may be sleeping in injected latency; shutdown waits this long for them.
_SHUTDOWN_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RunningEmulator:
    """A started emulator: where it listens and the state behind it."""

    host: str
    port: int
    state: EmulatorState

    @property
    def url(self) -> str:
        """The endpoint URL for a `transfer` client, e.g. "http://127.0.0.1:54321"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@asynccontextmanager
async def run_emulator(
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    accept_any: bool = False,
    faults: Faults | None = None,
    seed: int | None = None,
    state: EmulatorState | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator until the block ends; port 0 picks a free port (see `.url`)."""
    if state is None:
        state = EmulatorState(accept_any=accept_any, faults=faults, seed=seed)
    # No access log: benchmarks push thousands of calls a second through here.
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield RunningEmulator(host=str(bound_host), port=int(bound_port), state=state)
    finally:
        await runner.cleanup()


def serve(
    host: str = DEFAULT_HOST,
    port: int = 0,
    accept_any: bool = False,
    faults: Faults | None = None,
    *,
    seed: int | None = None,
    state: EmulatorState | None = None,
) -> None:
    """Serve the emulator until SIGINT or SIGTERM, after printing `emulator listening on URL`.

    `state`, when given, is served as it is (executions started, step timeouts set).
    """
    if state is None:
        state = EmulatorState(accept_any=accept_any, faults=faults, seed=seed)
    asyncio.run(_serve_until_signal(host, port, state))


async def _serve_until_signal(host: str, port: int, state: EmulatorState) -> None:
    shutdown = Shutdown()
    with handling_signals(shutdown):
        async with run_emulator(host, port, state=state) as emulator:
            # Whoever started us reads this line to learn the port; flush or it sits in a pipe.
            print(f"emulator listening on {emulator.url}", flush=True)
            await shutdown.requested.wait()
