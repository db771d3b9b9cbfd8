"""Transfer Family's callback: the two clients (`lean`, the default, and `aio`, aiobotocore's)
apart from the sender (`sender`: one `send(step)` with the retry policy). Both clients raise
relay's own `CallbackError` (`errors`), never botocore's or aiohttp's exceptions. The aiobotocore
client also makes the execution reads of DESIGN §11 (`list_executions`, `describe_execution`)."""

from relay.limits import RetryPolicy
from relay.transfer.aio import (
    AioTransferClient,
    ExecutionPage,
    open_transfer,
    relay_user_agent,
    transfer_config,
)
from relay.transfer.errors import CallbackError, CallbackFailed, CallNotStarted
from relay.transfer.lean import LeanTransferClient, open_lean_transfer
from relay.transfer.sender import CallbackClient, NoPacing, Pacer, Sent, TransferSender

__all__ = [
    "AioTransferClient",
    "CallNotStarted",
    "CallbackClient",
    "CallbackError",
    "CallbackFailed",
    "ExecutionPage",
    "LeanTransferClient",
    "NoPacing",
    "Pacer",
    "RetryPolicy",
    "Sent",
    "TransferSender",
    "open_lean_transfer",
    "open_transfer",
    "relay_user_agent",
    "transfer_config",
]
