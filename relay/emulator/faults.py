"""Fault settings of the emulator (latency, throttling, 5xx, denial, wire forms) and its bucket."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeGuard, TypeVar

from relay.emulator.protocol import OPERATIONS, ErrorForm, GatewayBody
from relay.errors import ConfigError


class FailureKind(StrEnum):
    """A kind of 5xx the emulator can inject; the value is what `error_kinds` holds in JSON."""

    SERVICE_UNAVAILABLE = "ServiceUnavailableException"
    INTERNAL_SERVICE_ERROR = "InternalServiceError"
    BAD_GATEWAY = "BadGateway"
    """HTTP 502 from a load balancer in front of the service (no error type)."""
    GATEWAY_UNAVAILABLE = "GatewayUnavailable"
    """HTTP 503 from a load balancer (no error type)."""
    GATEWAY_TIMEOUT = "GatewayTimeout"
    """HTTP 504 from a load balancer (no error type)."""


ALL_FAILURE_KINDS = tuple(FailureKind)
DEFAULT_FAILURE_KINDS = (
    FailureKind.SERVICE_UNAVAILABLE,
    FailureKind.INTERNAL_SERVICE_ERROR,
    FailureKind.BAD_GATEWAY,
)
"""What `error_rate` draws from unless told otherwise (the demo's and benchmarks' mix)."""

_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")
_Choice = TypeVar("_Choice", bound=StrEnum)


@dataclass(frozen=True, kw_only=True, slots=True)
class Faults:
    """What the emulator does wrong on purpose; the defaults do nothing wrong.

    `throttle_rps` 0 turns throttling off; `throttle_burst` None means "one second's worth,
    at least 1". `retry_after_s` None derives `RetryAfterSeconds` from the bucket (see
    `retry_after_text`). `error_rate` is the probability of a 5xx, its kind drawn uniformly
    from `error_kinds`. `deny_workflows` answer AccessDeniedException; `error_workflows` answer
    the given error code (`{workflow_id: "ExpiredTokenException"}`). `error_form` is how every
    service error names its type and message on the wire; `gateway_body` what a gateway's
    502/503/504 carries. `clock_skew_s` sets the emulator's clock to real time plus this many
    seconds (as if the caller's clock were that far behind): requests signed more than 5
    minutes from it are refused, and every answer's `Date` header shows it.

    The members above are about `SendWorkflowStepState` (but `latency_ms`, `jitter_ms`,
    `error_form` and `clock_skew_s`, which every operation gets). Per operation, any of
    `OPERATIONS`: `deny_operations` answer AccessDeniedException (IAM's refusal, naming the
    permission); `throttle_operations` give an operation a token bucket of its own at that many
    calls per second (burst: one second's worth, at least 1), answering ThrottlingException with
    `RetryAfterSeconds`; `error_operations` answer every call of an operation with that error
    code. `page_size` is the most executions one `ListExecutions` page holds, whatever
    `MaxResults` asks (a page may hold fewer than asked; 1 makes every execution a page).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    throttle_rps: float = 0.0
    throttle_burst: int | None = None
    retry_after_s: float | None = None
    error_rate: float = 0.0
    error_kinds: tuple[FailureKind, ...] = DEFAULT_FAILURE_KINDS
    deny_workflows: frozenset[str] = frozenset()
    error_workflows: Mapping[str, str] = field(default_factory=dict)
    error_form: ErrorForm = ErrorForm.TYPE
    gateway_body: GatewayBody = GatewayBody.HTML
    clock_skew_s: float = 0.0
    deny_operations: frozenset[str] = frozenset()
    throttle_operations: Mapping[str, float] = field(default_factory=dict)
    error_operations: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "throttle_rps"):
            _require(_is_non_negative(getattr(self, name)), f"{name} must be a number >= 0")
        _require(
            self.throttle_burst is None
            or (_is_int(self.throttle_burst) and self.throttle_burst >= 1),
            "throttle_burst must be an integer >= 1",
        )
        _require(_is_number(self.clock_skew_s), "clock_skew_s must be a finite number")
        _require(
            self.retry_after_s is None or _is_non_negative(self.retry_after_s),
            "retry_after_s must be a number >= 0",
        )
        _require(
            _is_number(self.error_rate) and 0.0 <= self.error_rate <= 1.0,
            "error_rate must be a number between 0 and 1",
        )
        _require(
            all(isinstance(kind, FailureKind) for kind in self.error_kinds),
            f"error_kinds must be among {[kind.value for kind in FailureKind]}",
        )
        _require(
            bool(self.error_kinds) or self.error_rate == 0.0,
            "error_kinds must not be empty while error_rate > 0",
        )
        _require(
            isinstance(self.deny_workflows, frozenset)
            and all(isinstance(workflow, str) for workflow in self.deny_workflows),
            "deny_workflows must be a frozenset of workflow ids",
        )
        _require(
            isinstance(self.error_workflows, Mapping)
            and all(
                isinstance(workflow, str)
                and isinstance(code, str)
                and _ERROR_CODE.fullmatch(code) is not None
                for workflow, code in self.error_workflows.items()
            ),
            "error_workflows must map workflow ids to error codes",
        )
        _require(
            isinstance(self.error_form, ErrorForm),
            f"error_form must be one of {[form.value for form in ErrorForm]}",
        )
        _require(
            isinstance(self.gateway_body, GatewayBody),
            f"gateway_body must be one of {[body.value for body in GatewayBody]}",
        )
        operations = f"operations among {list(OPERATIONS)}"
        _require(
            isinstance(self.deny_operations, frozenset) and self.deny_operations <= set(OPERATIONS),
            f"deny_operations must be a frozenset of {operations}",
        )
        _require(
            isinstance(self.throttle_operations, Mapping)
            and all(
                operation in OPERATIONS and _is_number(rps) and rps > 0
                for operation, rps in self.throttle_operations.items()
            ),
            f"throttle_operations must map {operations} to calls per second > 0",
        )
        _require(
            isinstance(self.error_operations, Mapping)
            and all(
                operation in OPERATIONS
                and isinstance(code, str)
                and _ERROR_CODE.fullmatch(code) is not None
                for operation, code in self.error_operations.items()
            ),
            f"error_operations must map {operations} to error codes",
        )
        _require(
            _is_int(self.page_size) and 1 <= self.page_size <= 1000,
            "page_size must be an integer from 1 to 1000",
        )

    @property
    def burst(self) -> int:
        """The bucket's capacity in effect."""
        if self.throttle_burst is not None:
            return self.throttle_burst
        return max(1, math.ceil(self.throttle_rps))

    def to_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them."""
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "throttle_rps": self.throttle_rps,
            "throttle_burst": self.throttle_burst,
            "retry_after_s": self.retry_after_s,
            "error_rate": self.error_rate,
            "error_kinds": [kind.value for kind in self.error_kinds],
            "deny_workflows": sorted(self.deny_workflows),
            "error_workflows": dict(sorted(self.error_workflows.items())),
            "error_form": self.error_form.value,
            "gateway_body": self.gateway_body.value,
            "clock_skew_s": self.clock_skew_s,
            "deny_operations": sorted(self.deny_operations),
            "throttle_operations": dict(sorted(self.throttle_operations.items())),
            "error_operations": dict(sorted(self.error_operations.items())),
            "page_size": self.page_size,
        }

    def updated(self, changes: Mapping[str, object]) -> "Faults":
        """These settings with the given JSON members changed; raise ConfigError on a bad one."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        _require(not unknown, f"unknown fault settings: {unknown}")
        values: dict[str, Any] = dict(changes)
        if "error_kinds" in values:
            values["error_kinds"] = _failure_kinds(values["error_kinds"])
        for name, what in (("deny_workflows", "workflow ids"), ("deny_operations", "operations")):
            if name in values:
                _require(
                    isinstance(values[name], list | tuple | set | frozenset),
                    f"{name} must be a list of {what}",
                )
                values[name] = frozenset(values[name])
        for name, what in (
            ("error_workflows", "workflow id to error code"),
            ("throttle_operations", "operation to calls per second"),
            ("error_operations", "operation to error code"),
        ):
            if name in values:
                _require(isinstance(values[name], Mapping), f"{name} must be an object of {what}")
                values[name] = dict(values[name])
        for name, kind in (("error_form", ErrorForm), ("gateway_body", GatewayBody)):
            if name in values:
                values[name] = _choice(name, kind, values[name])
        return replace(self, **values)


def _choice(name: str, kind: type[_Choice], value: object) -> _Choice:
    choices = [member.value for member in kind]
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {choices}")
    return kind(value)


def _failure_kinds(value: object) -> tuple[FailureKind, ...]:
    choices = [kind.value for kind in FailureKind]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"error_kinds must be a list of {choices}")
    try:
        return tuple(FailureKind(kind) for kind in value)
    except ValueError as error:
        raise ConfigError(f"error_kinds must be among {choices}") from error


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: object) -> bool:
    # bool is an int subclass; `true` in JSON is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _is_non_negative(value: object) -> bool:
    return _is_number(value) and value >= 0


def retry_after_text(wait_s: float, override_s: float | None) -> str:
    """The `RetryAfterSeconds` value: whole seconds, rounded up, at least "1".

    The model types it as a string and says nothing more; AWS services put whole seconds
    there (as in HTTP's Retry-After). Rounding up keeps the promise "no token sooner", and
    "0" would invite a client that honours it to retry in a hot loop. An override is sent
    as given ("2", or "0.25" for a fractional one) so tests and benchmarks can pick any value.
    """
    if override_s is not None:
        return str(int(override_s)) if float(override_s).is_integer() else str(override_s)
    return str(max(1, math.ceil(wait_s)))
