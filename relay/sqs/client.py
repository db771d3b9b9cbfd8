"""The SQS client, and the one error type callers see: botocore's exceptions stop here."""

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from relay.errors import RelayError
from relay.sqs.outgoing import error_code

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any


SQS_ERROR_CODES: Final = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAddress",
        "InvalidSecurity",
        "InvalidParameterValue",
        "InvalidAttributeValue",
        "InvalidMessageContents",
        "MissingParameter",
        "UnsupportedOperation",
        "RequestThrottled",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        "OverLimit",
        "BatchEntryIdsNotDistinct",
        "BatchRequestTooLong",
        "EmptyBatchRequest",
        "InvalidBatchEntryId",
        "TooManyEntriesInBatchRequest",
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "KmsAccessDenied",
        "KmsDisabled",
        "KmsInvalidKeyUsage",
        "KmsInvalidState",
        "KmsNotFound",
        "KmsOptInRequired",
        "KmsThrottled",
        "RequestExpired",
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
"""SQS's documented error codes: the values a metric label may take (others are `other`)."""


class SqsError(RelayError):
    """An SQS call that failed (the service refused, or it could not be reached); `code` is
    SQS's error code, or the transport error's type name (`from_service` False)."""

    def __init__(self, code: str, message: str, *, from_service: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.from_service = from_service

    @property
    def label(self) -> str:
        """The code as a metric label: a code the endpoint chose is kept only if SQS documents
        it (an endpoint must not grow /metrics at will); transport errors are relay's names."""
        if not self.from_service or self.code in SQS_ERROR_CODES:
            return self.code
        return "other"


@contextlib.contextmanager
def sqs_errors() -> Iterator[None]:
    """Turns botocore's and the transport's exceptions into `SqsError`."""
    try:
        yield
    except (ClientError, BotoCoreError, OSError) as exc:
        raise SqsError(
            error_code(exc), str(exc)[:300], from_service=isinstance(exc, ClientError)
        ) from exc


def sqs_config(*, max_pool_connections: int = 10) -> "AioConfig":
    """botocore settings for SQS: standard retries (SQS calls are idempotent enough), a pool."""
    # Imported here: the producer imports relay.sqs and must not load aiobotocore.
    from aiobotocore.config import AioConfig

    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=max_pool_connections,
        # Long polls wait 20 s; the read timeout must be longer.
        read_timeout=30,
        connect_timeout=5,
    )


@contextlib.asynccontextmanager
async def open_sqs(
    session: "AioSession | None" = None, *, max_pool_connections: int = 10
) -> AsyncIterator[SQSClient]:
    """An aiobotocore SQS client from the standard AWS chain (AWS_ENDPOINT_URL_SQS honoured)."""
    from relay.aws import new_session

    session = session or new_session()
    async with session.create_client(
        "sqs", config=sqs_config(max_pool_connections=max_pool_connections)
    ) as client:
        yield client
