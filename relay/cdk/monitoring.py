"""The five alarms an operator acts on (deploy/README.md, "Runbook") and the dashboard, for
`TransferFamilyRelay`: the template's, metric for metric (tests/deploy/ checks both against
relay.emf.EMF_METRICS). The dead-letter alarm counts every reason of relay.outcomes.Reason."""

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from relay.config.deployment import DeploymentSettings
from relay.outcomes import Outcome, Reason

PERIOD_S = 300


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceNames:
    """The names the metrics are dimensioned by (tokens until deploy time)."""

    queue: str
    dead_letter_queue: str
    cluster: str
    service: str


def service_dimensions(names: ServiceNames) -> list[dict[str, str]]:
    """The ClusterName and ServiceName dimensions of the service's metrics."""
    return [
        {"Name": "ClusterName", "Value": names.cluster},
        {"Name": "ServiceName", "Value": names.service},
    ]


def _stat(
    query_id: str, namespace: str, name: str, dimensions: list[dict[str, str]], stat: str,
    period_s: int, label: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    query: dict[str, Any] = {
        "Id": query_id,
        "ReturnData": False,
        "MetricStat": {
            "Stat": stat,
            "Period": period_s,
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
        },
    }
    if label:
        query["Label"] = label
    return query


def _alarm(
    scope: Construct,
    name: str,
    topic: sns.ITopic | None,
    *,
    metrics: list[dict[str, Any]] | None = None,
    dimensions: list[dict[str, str]] | None = None,
    **properties: Any,
) -> cloudwatch.CfnAlarm:
    actions = [topic.topic_arn] if topic is not None else None
    alarm = cloudwatch.CfnAlarm(
        scope, name, alarm_actions=actions, ok_actions=actions, **properties
    )
    # Metric queries and dimensions in CloudFormation's own shape, as in the template.
    if metrics is not None:
        alarm.add_property_override("Metrics", metrics)
    if dimensions is not None:
        alarm.add_property_override("Dimensions", dimensions)
    return alarm


def add_alarms(
    scope: Construct, settings: DeploymentSettings, names: ServiceNames, topic: sns.ITopic | None
) -> dict[str, cloudwatch.CfnAlarm]:
    """The five alarms, by the template's names; each notifies `topic` on ALARM and OK."""
    namespace = settings.emf_namespace
    queue = [{"Name": "QueueName", "Value": names.queue}]
    dlq = [{"Name": "QueueName", "Value": names.dead_letter_queue}]
    # Every dead-letter reason (conflict is its own outcome), and the copies the DLQ received:
    # the larger still counts when relay's metrics are lost. Not the DLQ's depth, which audit
    # copies would hold in ALARM.
    reasons = [
        (Outcome.CONFLICT if reason is Reason.CONFLICT else Outcome.DEAD_LETTERED, reason)
        for reason in Reason
    ]
    by_reason = [
        _stat(
            reason.value, namespace, "Messages",
            [*queue, {"Name": "Outcome", "Value": outcome.value},
             {"Name": "Reason", "Value": reason.value}],
            "Sum", PERIOD_S,
        )
        for outcome, reason in reasons
    ]  # fmt: skip
    alarms = {
        "DeadLetterAlarm": _alarm(
            scope,
            "DeadLetterAlarm",
            topic,
            alarm_description=(
                "relay dead-lettered step results in the last 5 minutes. Runbook - relay dlq "
                "stats --dlq-url <DeadLetterQueueUrl>, fix the cause, relay replay."
            ),
            metrics=[
                _stat(
                    "dlq_sent",
                    "AWS/SQS",
                    "NumberOfMessagesSent",
                    dlq,
                    "Sum",
                    PERIOD_S,
                    "Copies sent to the DLQ",
                ),
                *by_reason,
                {
                    "Id": "relay_dead_letters",
                    "Label": "Dead-lettered by relay",
                    "ReturnData": False,
                    "Expression": f"SUM([{', '.join(r.value for _, r in reasons)}])",
                },
                {
                    "Id": "new_dead_letters",
                    "Label": "New dead-letters",
                    "ReturnData": True,
                    "Expression": "MAX([dlq_sent, relay_dead_letters])",
                },
            ],
            evaluation_periods=1,
            threshold=settings.dead_letter_alarm_threshold,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        ),
        # One open circuit on any task is an IAM mistake.
        "OpenCircuitsAlarm": _alarm(
            scope,
            "OpenCircuitsAlarm",
            topic,
            alarm_description=(
                "relay holds a circuit open - Transfer Family answers AccessDenied for a "
                "workflow and its results are released, not delivered. Fix the task role."
            ),
            namespace=namespace,
            metric_name="OpenCircuits",
            dimensions=queue,
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        ),
        # The older of SQS's oldest waiting message and relay's oldest in flight: SQS's alone
        # goes blind when relay keeps releasing messages.
        "MessagesStuckAlarm": _alarm(
            scope,
            "MessagesStuckAlarm",
            topic,
            alarm_description=(
                "Step results have waited too long, on the queue or in relay's hands - relay "
                "is down, too few tasks, Transfer Family is throttling or failing."
            ),
            metrics=[
                _stat(
                    "queue_age",
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    queue,
                    "Maximum",
                    60,
                    "Oldest message on the queue (SQS)",
                ),
                _stat(
                    "in_flight_age",
                    namespace,
                    "OldestInFlightAge",
                    queue,
                    "Maximum",
                    60,
                    "Oldest message in flight (relay)",
                ),
                {
                    "Id": "oldest",
                    "Label": "Oldest step result waiting",
                    "ReturnData": True,
                    "Expression": "MAX([queue_age, in_flight_age])",
                },
            ],
            evaluation_periods=3,
            threshold=settings.oldest_message_alarm_s,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        ),
        "ThrottledShareAlarm": _alarm(
            scope,
            "ThrottledShareAlarm",
            topic,
            alarm_description=(
                "Transfer Family throttled more than the threshold's share of relay's callback "
                "attempts for 15 minutes."
            ),
            metrics=[
                _stat("throttles", namespace, "Throttles", queue, "Sum", PERIOD_S),
                _stat("attempts", namespace, "CallbackAttempts", queue, "Sum", PERIOD_S),
                {
                    "Id": "throttled_share",
                    "Label": "Throttled share of callback attempts (%)",
                    "ReturnData": True,
                    "Expression": "IF(attempts > 0, 100 * FILL(throttles, 0) / attempts, 0)",
                },
            ],
            evaluation_periods=3,
            datapoints_to_alarm=3,
            threshold=settings.throttled_share_alarm_percent,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
        ),
        # Fewer than min_tasks for 5 minutes: tasks fail to start or crash. No data is no task
        # reporting (or Container Insights off): act.
        "RunningTasksAlarm": _alarm(
            scope,
            "RunningTasksAlarm",
            topic,
            alarm_description=(
                "Fewer relay tasks run than the minimum for 5 minutes - tasks fail to start, "
                "fail their health check or crash."
            ),
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions=service_dimensions(names),
            statistic="Average",
            period=60,
            evaluation_periods=5,
            threshold=settings.min_tasks,
            comparison_operator="LessThanThreshold",
            treat_missing_data="breaching",
        ),
    }
    return alarms


def add_dashboard(
    scope: Construct, settings: DeploymentSettings, names: ServiceNames
) -> cloudwatch.CfnDashboard:
    """The template's dashboard, from the same body (relay/cdk/dashboard_body.txt, which a
    test holds equal to the template's): numbers written in, names substituted."""
    body = files("relay.cdk").joinpath("dashboard_body.txt").read_text(encoding="utf-8")
    for name, value in (
        ("MinTasks", settings.min_tasks),
        ("OldestMessageAlarmSeconds", settings.oldest_message_alarm_s),
        ("ThrottledShareAlarmPercent", settings.throttled_share_alarm_percent),
    ):
        body = body.replace("${" + name + "}", json.dumps(value))
    return cloudwatch.CfnDashboard(
        scope,
        "Dashboard",
        dashboard_name=cdk.Fn.sub("${AWS::StackName}-${AWS::Region}"),
        dashboard_body=cdk.Fn.sub(
            body,
            {
                "QueueNameValue": names.queue,
                "DeadLetterQueueNameValue": names.dead_letter_queue,
                "ClusterNameValue": names.cluster,
                "ServiceNameValue": names.service,
                "EmfNamespace": settings.emf_namespace,
            },
        ),
    )
