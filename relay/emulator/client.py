"""A client of the emulator's admin API, for tests, the demo and benchmarks in another process."""

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp

from relay.emulator.app import ADMIN_PREFIX


class EmulatorAdminError(Exception):
    """The admin API refused a request (HTTP 4xx/5xx); the message is its `error` text."""


class EmulatorAdmin:
    """Drive an emulator over HTTP: `async with EmulatorAdmin(url) as admin: ...`."""

    def __init__(self, url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self._base = url.rstrip("/") + ADMIN_PREFIX
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def register(
        self, steps: Iterable[tuple[str, str, str]], *, started_s_ago: float = 0.0
    ) -> int:
        """Start executions whose (workflow_id, execution_id, token) steps wait for callbacks,
        now or `started_s_ago` seconds ago; return how many."""
        executions = [
            {"workflow_id": workflow_id, "execution_id": execution_id, "token": token}
            for workflow_id, execution_id, token in steps
        ]
        payload = {"executions": executions, "started_s_ago": started_s_ago}
        answer = await self._request("POST", "/executions", payload)
        return int(answer["registered"])

    async def step_timeouts(self) -> dict[str, Any]:
        """`{"default": seconds, "workflows": {workflow_id: seconds}}`."""
        return await self._request("GET", "/step-timeouts")

    async def set_step_timeouts(
        self, *, default: float | None = None, workflows: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        """How long steps wait for their callback: every workflow's default, and some
        workflows' own; returns the timeouts now in force."""
        payload: dict[str, Any] = {"workflows": dict(workflows or {})}
        if default is not None:
            payload["default"] = default
        return await self._request("PUT", "/step-timeouts", payload)

    async def faults(self) -> dict[str, Any]:
        """The faults in force, as JSON."""
        return await self._request("GET", "/faults")

    async def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change some fault settings (the `Faults` member names); return all now in force."""
        return await self._request("PUT", "/faults", changes)

    async def calls(self, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The calls from log index `since` on, and the index to pass next time."""
        answer = await self._request("GET", f"/calls?since={since}")
        return list(answer["calls"]), int(answer["next"])

    async def stats(self) -> dict[str, Any]:
        """Calls by result, executions and tokens."""
        return await self._request("GET", "/stats")

    async def reset(self) -> None:
        """Forget executions, calls and counters, and turn every fault off."""
        await self._request("POST", "/reset")

    async def _request(self, method: str, path: str, payload: object = None) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use EmulatorAdmin as an async context manager")
        async with self._session.request(method, self._base + path, json=payload) as response:
            answer: dict[str, Any] = await response.json()
            if response.status >= 400:
                raise EmulatorAdminError(str(answer.get("error", answer)))
            return answer
