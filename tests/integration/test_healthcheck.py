"""`relay healthcheck` against a real health server, with the environment a Fargate task has."""

import asyncio
import os
import subprocess
import sys

from relay.http import create_app, serve_http
from relay.observability import Metrics
from tests.integration.worker_support import free_port

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
PLAIN_URLOPEN = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


async def test_healthcheck_probes_loopback_directly_whatever_the_proxy_settings(
    closed_port: int,
) -> None:
    """With HTTP_PROXY and HTTPS_PROXY naming a closed loopback port, `relay healthcheck`
    still reaches the health server and exits 0, where a plain urllib request goes to the
    proxy and fails."""
    closed = f"http://127.0.0.1:{closed_port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RELAY_") and k.upper() not in PROXY_VARIABLES
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = closed
    port = free_port()
    app = create_app(lambda: (True, "polling"), Metrics())
    async with serve_http(app, "127.0.0.1", port):
        url = f"http://127.0.0.1:{port}/healthz"
        through_proxy = await asyncio.to_thread(_run, env, "-c", PLAIN_URLOPEN, url)
        probe = await asyncio.to_thread(_run, env, "-m", "relay", "healthcheck", "--url", url)
    # The environment does send urllib to the proxy: without its own opener the probe fails.
    assert through_proxy.returncode != 0
    assert "Connection refused" in through_proxy.stderr
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "healthy"
