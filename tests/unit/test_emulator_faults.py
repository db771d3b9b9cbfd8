"""The emulator's fault settings, token bucket and RetryAfterSeconds, without a server."""

import pytest

from relay.emulator.faults import (
    DEFAULT_FAILURE_KINDS,
    FailureKind,
    Faults,
    retry_after_text,
)
from relay.emulator.protocol import ErrorForm, GatewayBody
from relay.errors import ConfigError


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("wait_s", "override_s", "expected"),
    [
        (0.001, None, "1"),
        (1.0, None, "1"),
        (1.2, None, "2"),
        (99.9, None, "100"),
        (5.0, 7, "7"),
        (5.0, 2.0, "2"),
        (5.0, 0.25, "0.25"),
        (5.0, 0, "0"),
    ],
)
def test_retry_after_is_whole_seconds_rounded_up_unless_overridden(
    wait_s: float, override_s: float | None, expected: str
) -> None:
    """RetryAfterSeconds is the wait in whole seconds rounded up (at least 1), or the override."""
    assert retry_after_text(wait_s, override_s) == expected


@pytest.mark.parametrize(("rps", "burst"), [(0.01, 1), (1.0, 1), (2.5, 3), (100, 100)])
def test_default_burst_is_one_seconds_worth(rps: float, burst: int) -> None:
    """Without throttle_burst the bucket holds one second's tokens, at least one."""
    assert Faults(throttle_rps=rps).burst == burst


@pytest.mark.parametrize(
    "settings",
    [
        {"latency_ms": -1},
        {"jitter_ms": float("nan")},
        {"throttle_rps": float("inf")},
        {"throttle_burst": 0},
        {"throttle_burst": True},
        {"retry_after_s": -0.5},
        {"error_rate": 1.5},
        {"error_rate": 0.5, "error_kinds": ()},
        {"deny_workflows": ["w-0123456789abcdefg"]},
        {"error_workflows": {"w-a": 3}},
        {"error_workflows": {"w-a": "Not An Error"}},
        {"error_workflows": [("w-a", "ThrottlingException")]},
        {"error_form": "__type"},
        {"gateway_body": "html"},
        {"clock_skew_s": float("nan")},
        {"clock_skew_s": float("-inf")},
        {"clock_skew_s": "900"},
        {"clock_skew_s": True},
    ],
)
def test_impossible_settings_are_a_config_error(settings: dict[str, object]) -> None:
    """A fault setting out of range or of the wrong type raises ConfigError (exit 2 in the CLI)."""
    with pytest.raises(ConfigError):
        Faults(**settings)  # type: ignore[arg-type]


def test_json_update_changes_only_the_given_settings() -> None:
    """A partial JSON update keeps the other settings and converts lists to the settings' types."""
    base = Faults(latency_ms=10, throttle_rps=5)

    updated = base.updated(
        {
            "error_rate": 0.25,
            "error_kinds": ["BadGateway", "GatewayTimeout"],
            "deny_workflows": ["w-a", "w-a"],
            "error_workflows": {"w-b": "ExpiredTokenException"},
            "error_form": "header_uri",
            "gateway_body": "empty",
            "clock_skew_s": -900,
        }
    )

    assert updated == Faults(
        latency_ms=10,
        throttle_rps=5,
        error_rate=0.25,
        error_kinds=(FailureKind.BAD_GATEWAY, FailureKind.GATEWAY_TIMEOUT),
        deny_workflows=frozenset({"w-a"}),
        error_workflows={"w-b": "ExpiredTokenException"},
        error_form=ErrorForm.HEADER_URI,
        gateway_body=GatewayBody.EMPTY,
        clock_skew_s=-900,
    )
    assert Faults().updated(updated.to_json()) == updated


@pytest.mark.parametrize(
    "changes",
    [
        {"latency": 5},
        {"error_kinds": ["Teapot"]},
        {"error_kinds": "BadGateway"},
        {"deny_workflows": 3},
        {"error_workflows": ["w-a"]},
        {"error_workflows": {"w-a": None}},
        {"error_form": "xml"},
        {"error_form": 1},
        {"gateway_body": "json"},
    ],
)
def test_json_update_with_unknown_or_mistyped_settings_is_a_config_error(
    changes: dict[str, object],
) -> None:
    """An unknown setting name or a mistyped value in a JSON update raises ConfigError."""
    with pytest.raises(ConfigError):
        Faults().updated(changes)


def test_defaults_inject_nothing() -> None:
    """The default faults add no latency, throttle, 5xx or denial, and write Transfer's own form."""
    faults = Faults()

    assert (faults.latency_ms, faults.jitter_ms, faults.throttle_rps, faults.error_rate) == (
        0,
        0,
        0,
        0,
    )
    assert faults.deny_workflows == frozenset()
    assert faults.error_workflows == {}
    assert faults.error_kinds == DEFAULT_FAILURE_KINDS
    assert (faults.error_form, faults.gateway_body) == (ErrorForm.TYPE, GatewayBody.HTML)
    assert faults.clock_skew_s == 0
