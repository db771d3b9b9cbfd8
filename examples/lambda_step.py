"""A Transfer Family custom step on AWS Lambda that answers through relay.

Transfer Family invokes `handler` with the custom-step event
(`custom-step-event-s3.json` beside this file). `@custom_step` publishes SUCCESS to the queue
in `RELAY_QUEUE_URL` when the handler returns and FAILURE when it raises; relay's worker then
sends the callback. The handler only does the step's work.
"""

from typing import Any

from relay.producer import custom_step

BLOCKED_SUFFIXES = (".exe", ".bat", ".js")


class RejectedUpload(Exception):
    """The uploaded file may not enter the workflow."""


@custom_step
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Checks the uploaded file; raising rejects it (FAILURE), returning accepts it (SUCCESS)."""
    location = event["fileLocation"]
    key = location["key"] if location["domain"] == "S3" else location["path"]
    if key.lower().endswith(BLOCKED_SUFFIXES):
        raise RejectedUpload(f"{key}: executable uploads are not accepted")
    # A real step would read the object here, e.g. boto3.client("s3").get_object(...).
    return {"checked": key}
