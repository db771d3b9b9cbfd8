"""The emulated service's error answers, in its own words: the fixed ones built once (the
request path only picks one), and those that name a workflow or an execution."""

from typing import Final

from relay.emulator.faults import FailureKind, Faults, retry_after_text
from relay.emulator.protocol import GatewayBody, GatewayError, ServiceError, gateway_page

EXECUTION_RESOURCE_TYPE: Final = "Execution"
"""`ResourceType` of the ResourceNotFoundException for an unknown execution (cf. "Server")."""
WORKFLOW_RESOURCE_TYPE: Final = "Workflow"

SERVICE_UNAVAILABLE: Final = ServiceError(
    code="ServiceUnavailableException",
    message="The service is temporarily unavailable. Please retry.",
    http_status=500,
)
INTERNAL_SERVICE_ERROR: Final = ServiceError(
    code="InternalServiceError",
    message="An internal error occurred. Please retry.",
    http_status=500,
)
_GATEWAY_STATUS: Final = {
    FailureKind.BAD_GATEWAY: 502,
    FailureKind.GATEWAY_UNAVAILABLE: 503,
    FailureKind.GATEWAY_TIMEOUT: 504,
}
FAILURES: Final[dict[tuple[FailureKind, GatewayBody], ServiceError | GatewayError]] = {
    **{
        (kind, body): answer
        for kind, answer in (
            (FailureKind.SERVICE_UNAVAILABLE, SERVICE_UNAVAILABLE),
            (FailureKind.INTERNAL_SERVICE_ERROR, INTERNAL_SERVICE_ERROR),
        )
        for body in GatewayBody
    },
    **{
        (kind, body): GatewayError(
            http_status=status, body=gateway_page(status) if body is GatewayBody.HTML else b""
        )
        for kind, status in _GATEWAY_STATUS.items()
        for body in GatewayBody
    },
}
"""The 5xx answers `error_rate` draws from, by kind and the gateway's body form."""
ALREADY_COMPLETED: Final = ServiceError(
    code="InvalidRequestException",
    message="Invalid request: step already completed for this token",
)
WRONG_TOKEN: Final = ServiceError(
    code="InvalidRequestException",
    message="Invalid request: the token does not belong to a step waiting in this execution",
)
# Errors about the caller's own request, in the words and statuses of AWS JSON services; like
# the other framework rejections they carry the Coral namespace.
_CORAL: Final = "com.amazon.coral.service#"
IDENTITY_ERRORS: Final = {
    code: ServiceError(code=code, message=message, http_status=status, namespace=_CORAL)
    for code, status, message in (
        ("ExpiredTokenException", 400, "The security token included in the request is expired"),
        (
            "UnrecognizedClientException",
            400,
            "The security token included in the request is invalid.",
        ),
        (
            "InvalidSignatureException",
            400,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details.",
        ),
        (
            "IncompleteSignatureException",
            400,
            "Authorization header requires 'Signature' parameter.",
        ),
        ("MissingAuthenticationTokenException", 400, "Request is missing Authentication Token"),
        ("RequestExpired", 400, "Request has expired."),
    )
}


def callback_denied(workflow_id: str) -> ServiceError:
    """A workflow's callbacks refused by IAM (`deny_workflows`)."""
    return ServiceError(
        code="AccessDeniedException",
        message="User is not authorized to perform: transfer:SendWorkflowStepState "
        f"on resource: workflow/{workflow_id}",
    )


def operation_denied(operation: str, workflow_id: str) -> ServiceError:
    """An operation refused by IAM (`deny_operations`), naming the permission, as AWS words it."""
    return ServiceError(
        code="AccessDeniedException",
        message="User: arn:aws:sts::123456789012:assumed-role/relay-operator/emulator is not "
        f"authorized to perform: transfer:{operation} on resource: "
        f"arn:aws:transfer:us-east-1:123456789012:workflow/{workflow_id}",
    )


def throttled(retry_after: str) -> ServiceError:
    """ThrottlingException, telling when to try again."""
    return ServiceError(
        code="ThrottlingException",
        message="Rate exceeded",
        members={"RetryAfterSeconds": retry_after},
    )


def execution_not_found(workflow_id: str, execution_id: str) -> ServiceError:
    """An execution the service does not know, or no longer: never started, or not in progress."""
    return ServiceError(
        code="ResourceNotFoundException",
        message=f"Unknown execution {execution_id} of workflow {workflow_id}",
        members={"Resource": execution_id, "ResourceType": EXECUTION_RESOURCE_TYPE},
    )


def workflow_not_found(workflow_id: str) -> ServiceError:
    """`ListExecutions` for a workflow the service does not know."""
    return ServiceError(
        code="ResourceNotFoundException",
        message=f"Unknown workflow {workflow_id}",
        members={"Resource": workflow_id, "ResourceType": WORKFLOW_RESOURCE_TYPE},
    )


def invalid_next_token() -> ServiceError:
    """A `NextToken` that is not one this workflow's listing handed out."""
    return ServiceError(code="InvalidNextTokenException", message="Invalid NextToken")


def injected_error(
    code: str, workflow_id: str, execution_id: str | None, faults: Faults
) -> ServiceError:
    """The answer `error_workflows` or `error_operations` asks for: the service's own, or a
    bare 400 if it has none of that code."""
    match code:
        case "AccessDeniedException":
            return callback_denied(workflow_id)
        case "ThrottlingException":
            return throttled(retry_after_text(1.0, faults.retry_after_s))
        case "ResourceNotFoundException" if execution_id is None:
            return workflow_not_found(workflow_id)
        case "ResourceNotFoundException":
            return execution_not_found(workflow_id, execution_id or "")
        case "InvalidRequestException":
            return WRONG_TOKEN
        case "ServiceUnavailableException":
            return SERVICE_UNAVAILABLE
        case "InternalServiceError":
            return INTERNAL_SERVICE_ERROR
    known = IDENTITY_ERRORS.get(code)
    if known is not None:
        return known
    return ServiceError(code=code, message=f"Injected {code}")
