"""The AWS JSON protocols (awsJson1_0, awsJson1_1) relay speaks on its hot path: reading an
error answer (`errors`), signing at the service's time with a cached signing key (`signing`),
and a lean client (`lean`) for Transfer Family's callback and the fleet table's calls."""

from relay.awsjson.errors import (
    CLOCK_SKEW_CODES,
    ERROR_TYPE_HEADER,
    MAX_ERROR_BODY_BYTES,
    REQUEST_ID_HEADER,
    WireError,
    error_name,
    header,
    http_date,
    read_error,
    retry_after_seconds,
)

__all__ = [
    "CLOCK_SKEW_CODES",
    "ERROR_TYPE_HEADER",
    "MAX_ERROR_BODY_BYTES",
    "REQUEST_ID_HEADER",
    "WireError",
    "error_name",
    "header",
    "http_date",
    "read_error",
    "retry_after_seconds",
]
