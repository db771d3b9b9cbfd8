"""The command line as a user meets it: both entry points, help, and usage errors (exit 2)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import RUN_OPTIONS

RELAY = str(Path(sys.executable).parent / "relay")
PYTHON_M = [sys.executable, "-m", "relay"]
COMMANDS = ["validate", "send", "run", "healthcheck"]
QUEUE = "http://127.0.0.1:9/123456789012/results"
"""Nothing listens on the discard port: a command that reached the network would fail there."""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any RELAY_* or COPILOT_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_"))}
    return {**env, **extra}


def relay(
    *args: str, launcher: list[str] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs relay in a subprocess (the console script unless told otherwise)."""
    return subprocess.run(
        [*(launcher or [RELAY]), *args],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("launcher", "help_flag"),
    [([RELAY], "--help"), (PYTHON_M, "--help"), ([RELAY], "-h")],
    ids=["relay --help", "python -m relay --help", "relay -h"],
)
def test_help_lists_the_subcommands(launcher: list[str], help_flag: str) -> None:
    """`relay --help` and `python -m relay --help` exit 0 and list every subcommand."""
    result = relay(help_flag, launcher=launcher)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    commands = result.stdout.split("Commands:")[1].split()
    for command in COMMANDS:
        assert command in commands


def test_run_help_shows_every_option_with_its_environment_variable() -> None:
    """`relay run --help` documents each RUN_OPTIONS flag and its RELAY_* variable."""
    result = relay("run", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for spec in RUN_OPTIONS:
        assert spec.flag in text
        assert spec.env in text
    assert "COPILOT_QUEUE_URI" in text


def test_version_exits_0() -> None:
    """`relay --version` prints the version and exits 0."""
    result = relay("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("relay, version ")


USAGE_ERRORS = {
    "unknown option": ["--bogus"],
    "unknown command": ["bogus"],
    "send missing --queue-url": ["send", "--file", "r.jsonl"],
    "send neither file nor flags": ["send", "--queue-url", QUEUE],
    "send file and flags": ["send", "--queue-url", QUEUE, "--file", "r.jsonl", "--token", "t"],
    "send bad status": ["send", "--queue-url", QUEUE, "--status", "DONE"],
    "validate missing file": ["validate"],
    "run no queue url": ["run"],
    "run max-in-flight 0": ["run", "--max-in-flight", "0", "--queue-url", "http://x"],
    "run not a number": ["run", "--max-in-flight", "many", "--queue-url", QUEUE],
    "run nan": ["run", "--retry-budget", "nan", "--queue-url", QUEUE],
    "run port out of range": ["run", "--http-port", "70000", "--queue-url", QUEUE],
}


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_each_usage_error_exits_2_with_one_line_on_stderr(args: list[str]) -> None:
    """Bad usage or configuration exits 2 with exactly one non-empty line and no traceback."""
    result = relay(*args)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].strip()
    assert lines[0].startswith("relay")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_a_usage_error_through_python_m_relay_is_the_same() -> None:
    """`python -m relay` maps usage errors the same way as the console script."""
    result = relay("run", "--max-in-flight", "0", "--queue-url", "http://x", launcher=PYTHON_M)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["relay: --max-in-flight must be at least 1, not 0"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RELAY_MAX_IN_FLIGHT", "0", "relay: --max-in-flight must be at least 1, not 0"),
        ("COPILOT_QUEUE_URI", "", "relay: no queue: pass --queue-url or set RELAY_QUEUE_URL"),
    ],
)
def test_run_settings_from_the_environment_are_checked_the_same_way(
    variable: str, value: str, message: str
) -> None:
    """A bad RELAY_* value, or an empty COPILOT_QUEUE_URI, is bad configuration: exit 2."""
    args = ["run"] if variable == "COPILOT_QUEUE_URI" else ["run", "--queue-url", QUEUE]
    result = relay(*args, env=clean_env(**{variable: value}))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(message)
