"""CloudWatch Embedded Metric Format (DESIGN §6): relay's metrics as CloudWatch reads them.

`EMF_METRICS` is the one table of what relay emits: the EMF writer renders it, and the
deploy template's alarms and dashboard are checked against it (tests/deploy).
"""

from dataclasses import dataclass
from typing import Final

QUEUE_DIMENSIONS: Final = ("QueueName",)
MESSAGE_DIMENSIONS: Final = ("QueueName", "Outcome", "Reason")

NO_REASON: Final = "none"
"""The `Reason` dimension of an outcome that has no reason."""


@dataclass(frozen=True, slots=True)
class EmfMetric:
    """One metric relay writes: its CloudWatch unit and the one dimension set it carries."""

    unit: str
    dimensions: tuple[str, ...] = QUEUE_DIMENSIONS
    help: str = ""


EMF_METRICS: Final[dict[str, EmfMetric]] = {
    "Messages": EmfMetric(
        "Count", MESSAGE_DIMENSIONS, "Messages finished, by outcome and reason (`none`)."
    ),
    "CallbackLatency": EmfMetric("Milliseconds", help="One SendWorkflowStepState call."),
    "EndToEndLatency": EmfMetric(
        "Milliseconds", help="From the message's SentTimestamp to its delivered callback."
    ),
    "CallbackAttempts": EmfMetric("Count", help="SendWorkflowStepState calls made."),
    "Throttles": EmfMetric("Count", help="ThrottlingException answers."),
    "Retries": EmfMetric("Count", help="Callback attempts after the first, in process."),
    "InFlight": EmfMetric("Count", help="Messages being processed at the end of the interval."),
    "OpenCircuits": EmfMetric("Count", help="Workflows whose circuit is open (an IAM mistake)."),
    "OldestInFlightAge": EmfMetric("Seconds", help="Age of the oldest message in flight."),
    "SendRate": EmfMetric("Count/Second", help="The callback rate limit in force (0 = none)."),
    "ClockOffset": EmfMetric(
        "Seconds", help="Offset relay signs with, learnt from the service's Date header."
    ),
}
