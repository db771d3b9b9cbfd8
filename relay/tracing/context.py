"""A trace context as a message carries it (DESIGN §12), read and written without OpenTelemetry.

Two forms travel with an SQS message:

- the `AWSTraceHeader` system attribute, in X-Ray's format
  (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`), which Lambda
  and the AWS SDKs set and X-Ray reads;
- the W3C `traceparent` (and `tracestate`) message attributes
  (`00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01`), which OpenTelemetry writes.

An X-Ray trace id is the OpenTelemetry one, 32 hex digits, written `1-` + the first 8 + `-` +
the other 24. Pure: the standard library only, so the producer (botocore alone, in a Lambda
layer) uses it too; OpenTelemetry is read only when the caller has already loaded it.
"""

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

AWS_TRACE_HEADER: Final = "AWSTraceHeader"
"""The SQS system attribute that carries an X-Ray trace header."""
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
W3C_ATTRIBUTES: Final = (TRACEPARENT, TRACESTATE)
"""The message attributes that carry a W3C trace context."""

LAMBDA_TRACE_ENV: Final = "_X_AMZN_TRACE_ID"
"""Where Lambda puts the invocation's X-Ray trace header."""
LAMBDA_FUNCTION_ENV: Final = "AWS_LAMBDA_FUNCTION_NAME"
"""Set in every Lambda runtime: `_X_AMZN_TRACE_ID` is read only there, as botocore does."""

MAX_HEADER_CHARS: Final = 1024
"""An X-Ray header longer than this is written back in its short form (Root, Parent, Sampled)."""
MAX_TRACESTATE_CHARS: Final = 512
"""W3C's limit for `tracestate`; a longer one is not carried."""

_XRAY_ROOT = re.compile(r"1-([0-9a-f]{8})-([0-9a-f]{24})")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class XRayHeader:
    """An X-Ray trace header, read: the trace id (32 hex digits), the parent span id (16), and
    the sampling decision (None: `Sampled=?` or absent, the receiver decides)."""

    trace_id: str
    parent_id: str | None
    sampled: bool | None


def parse_xray_header(text: str | None) -> XRayHeader | None:
    """The header's trace, parent and sampling decision; None when it has no valid Root."""
    if not text or len(text) > 4 * MAX_HEADER_CHARS:
        return None
    values: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            values.setdefault(key.strip(), value.strip())
    root = _XRAY_ROOT.fullmatch(values.get("Root", ""))
    if root is None:
        return None
    parent = values.get("Parent")
    sampled = {"1": True, "0": False}.get(values.get("Sampled", ""))
    return XRayHeader(
        trace_id=root.group(1) + root.group(2),
        parent_id=parent if parent is not None and _SPAN_ID.fullmatch(parent) else None,
        sampled=sampled,
    )


def xray_trace_id(trace_id: str) -> str:
    """32 hex digits as X-Ray writes them: `1-` + 8 + `-` + 24."""
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


def format_xray_header(trace_id: int, span_id: int, sampled: bool) -> str:
    """The X-Ray header for an OpenTelemetry span context."""
    return (
        f"Root={xray_trace_id(f'{trace_id:032x}')};Parent={span_id:016x};"
        f"Sampled={'1' if sampled else '0'}"
    )


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    """The W3C `traceparent` for an OpenTelemetry span context."""
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def traceparent_ok(text: str | None) -> bool:
    """Whether a `traceparent` is well formed (version 00's layout; ids not all zeros)."""
    match = _TRACEPARENT.fullmatch(text or "")
    if match is None or match.group(1) == "ff":
        return False
    return set(match.group(2)) != {"0"} and set(match.group(3)) != {"0"}


def usable_header(text: str | None) -> str | None:
    """An X-Ray header fit to send as `AWSTraceHeader`: as given when it reads and is short
    printable ASCII, in its short form when long, None when it has no valid Root."""
    header = parse_xray_header(text)
    if header is None or text is None:
        return None
    text = text.strip()
    if len(text) <= MAX_HEADER_CHARS and _PRINTABLE_ASCII.fullmatch(text):
        return text
    parts = [f"Root={xray_trace_id(header.trace_id)}"]
    if header.parent_id is not None:
        parts.append(f"Parent={header.parent_id}")
    if header.sampled is not None:
        parts.append(f"Sampled={'1' if header.sampled else '0'}")
    return ";".join(parts)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A trace context as a message carries it: the X-Ray header (`AWSTraceHeader`) and the
    W3C message attributes (`traceparent`, `tracestate`); either may be absent."""

    trace_header: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def carried_by(cls, trace_header: str | None, attributes: Mapping[str, str]) -> "TraceContext":
        """The context a received message carries, as far as it is well formed: whoever could
        send to the queue wrote it, so a malformed header or `traceparent` (or an oversized
        `tracestate`) is not carried on. Its other attributes are left out."""
        carried: dict[str, str] = {}
        parent = attributes.get(TRACEPARENT)
        if parent is not None and traceparent_ok(parent):
            carried[TRACEPARENT] = parent
            state = attributes.get(TRACESTATE)
            if state and len(state) <= MAX_TRACESTATE_CHARS and _PRINTABLE_ASCII.fullmatch(state):
                carried[TRACESTATE] = state
        return cls(trace_header=usable_header(trace_header), attributes=carried)

    @property
    def empty(self) -> bool:
        """Carries nothing."""
        return self.trace_header is None and not self.attributes

    @property
    def trace_id(self) -> str | None:
        """The trace it belongs to (32 hex digits): `traceparent`'s, else the X-Ray header's."""
        parent = self.attributes.get(TRACEPARENT)
        if traceparent_ok(parent):
            assert parent is not None
            return parent.split("-")[1]
        header = parse_xray_header(self.trace_header)
        return header.trace_id if header is not None else None


NO_CONTEXT: Final = TraceContext()


def producer_context(env: Mapping[str, str] | None = None) -> TraceContext:
    """The context a step processor publishes in, for the message it sends.

    With OpenTelemetry already loaded by the caller and a span current, that span (both forms,
    so X-Ray and W3C readers agree); otherwise on Lambda, the invocation's `_X_AMZN_TRACE_ID`
    (active tracing) as `AWSTraceHeader`; otherwise none. OpenTelemetry is never imported here.
    """
    env = os.environ if env is None else env
    current = _opentelemetry_context()
    if current is not None:
        return current
    if env.get(LAMBDA_FUNCTION_ENV):
        header = usable_header(env.get(LAMBDA_TRACE_ENV))
        if header is not None:
            return TraceContext(trace_header=header)
    return NO_CONTEXT


def _opentelemetry_context() -> TraceContext | None:
    """The current OpenTelemetry span's context, if the caller loaded OpenTelemetry and a valid
    span is current."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        trace_id, span_id = int(context.trace_id), int(context.span_id)
        sampled = bool(int(context.trace_flags) & 0x01)
        state = context.trace_state.to_header() if context.trace_state else ""
    except Exception:  # someone else's tracing must never stop a publish
        return None
    return context_of(trace_id, span_id, sampled, state)


def context_of(trace_id: int, span_id: int, sampled: bool, state: str) -> TraceContext:
    """The context a message sent within this span carries, in both forms: `AWSTraceHeader`,
    and `traceparent` with `tracestate` when that is short and printable enough to carry."""
    attributes = {TRACEPARENT: format_traceparent(trace_id, span_id, sampled)}
    if state and len(state) <= MAX_TRACESTATE_CHARS and _PRINTABLE_ASCII.fullmatch(state):
        attributes[TRACESTATE] = state
    return TraceContext(format_xray_header(trace_id, span_id, sampled), attributes)
