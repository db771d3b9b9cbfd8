"""The SQS boundary: clients, queue pairs, counts, receiving, batched deletes, visibility
changes and sends. Callers see one exception type, `SqsError`; botocore's stay in here.

Nothing here loads aiobotocore at import (the producer uses `relay.sqs.outgoing`); only
`open_sqs` does, when called. `relay.sqs.lean` (not imported here) makes the worker's three
per-message calls on the lean AWS JSON client.
"""

from relay.sqs.batching import (
    MAX_VISIBILITY_S,
    BatchedQueue,
    Batcher,
    EntryFailed,
    send_messages,
)
from relay.sqs.client import SqsError, open_sqs, sqs_config
from relay.sqs.outgoing import OutgoingMessage, SendFailure, is_fifo
from relay.sqs.queues import (
    QueuePair,
    QueueSettings,
    check_queue,
    create_queue_pair,
    dead_letter_sources,
    queue_counts,
    queue_identity,
    queue_name,
    queue_total,
    resolve_queue,
)
from relay.sqs.receive import ReceivedMessage, receive_messages
from relay.sqs.sizes import MAX_MESSAGE_BYTES

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_VISIBILITY_S",
    "BatchedQueue",
    "Batcher",
    "EntryFailed",
    "OutgoingMessage",
    "QueuePair",
    "QueueSettings",
    "ReceivedMessage",
    "SendFailure",
    "SqsError",
    "check_queue",
    "create_queue_pair",
    "dead_letter_sources",
    "is_fifo",
    "open_sqs",
    "queue_counts",
    "queue_identity",
    "queue_name",
    "queue_total",
    "receive_messages",
    "resolve_queue",
    "send_messages",
    "sqs_config",
]
