"""Who may do what, for `TransferFamilyRelay`: the queue policy (plain HTTP denied, SNS
fan-in by topic, other accounts' producers), the task role scoped to the queue, the DLQ and the
workflows (the dedupe table and X-Ray only when on), the execution role, and the producer and
DLQ operator managed policies. The template's statements, Sid for Sid."""

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from relay.config.deployment import DeploymentSettings

EXECUTION_POLICY = (
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
)


def ecs_tasks_of_this_account() -> iam.ServicePrincipal:
    # Confused-deputy guard: only ECS tasks of this account may assume the roles.
    return iam.ServicePrincipal(
        "ecs-tasks.amazonaws.com",
        conditions={
            "ArnLike": {
                "aws:SourceArn": cdk.Fn.sub(
                    "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"
                )
            },
            "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
        },
    )


def add_queues_policy(
    scope: Construct, settings: DeploymentSettings, queue: sqs.IQueue, dlq: sqs.IQueue
) -> None:
    """The queues' policy: plain HTTP denied on both; SNS topics and other accounts may only
    send to the queue, when named."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": [queue.queue_arn, dlq.queue_arn],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    if settings.sns_topic_arns:
        # SNS-to-SQS fan-in: SNS may deliver from exactly the topics named.
        statements.append(
            {
                "Sid": "AllowSnsTopics",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue.queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": list(settings.sns_topic_arns)}},
            }
        )
    if settings.producer_account_ids:
        # Step processors in other accounts: publish only.
        statements.append(
            {
                "Sid": "AllowProducerAccounts",
                "Effect": "Allow",
                "Principal": {"AWS": list(settings.producer_account_ids)},
                "Action": "sqs:SendMessage",
                "Resource": queue.queue_arn,
            }
        )
    sqs.CfnQueuePolicy(
        scope,
        "QueuesPolicy",
        queues=[queue.queue_url, dlq.queue_url],
        policy_document={"Version": "2012-10-17", "Statement": statements},
    )


def task_role(
    scope: Construct,
    settings: DeploymentSettings,
    queue: sqs.IQueue,
    dlq: sqs.IQueue,
    workflows: list[str],
    table: dynamodb.Table | None,
) -> iam.Role:
    """relay's task role: exactly what `relay run` calls, inline, nothing attached."""
    policies = {
        "relay": iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="ConsumeQueue",
                    actions=[
                        "sqs:ReceiveMessage",
                        "sqs:DeleteMessage",
                        "sqs:ChangeMessageVisibility",
                        "sqs:GetQueueAttributes",
                    ],
                    resources=[queue.queue_arn],
                ),
                # No sqs:GetQueueUrl: RELAY_DLQ_URL is set. GetQueueAttributes: relay sizes
                # each copy to the DLQ's own limit.
                iam.PolicyStatement(
                    sid="DeadLetter",
                    actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                    resources=[dlq.queue_arn],
                ),
                iam.PolicyStatement(
                    sid="SendWorkflowStepState",
                    actions=["transfer:SendWorkflowStepState"],
                    resources=workflows,
                ),
            ]
        )
    }
    if table is not None:
        policies["dedupe-table"] = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="DedupeTable",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    resources=[table.table_arn],
                )
            ]
        )
    if settings.tracing:
        # X-Ray's write actions take no resource-level permissions, hence "*".
        policies["xray"] = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="WriteTraces",
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    resources=["*"],
                )
            ]
        )
    return iam.Role(
        scope,
        "TaskRole",
        description=("relay tasks - consume the queue, dead-letter, send workflow step callbacks."),
        assumed_by=ecs_tasks_of_this_account(),
        inline_policies=policies,
    )


def producer_policy(scope: Construct, queue: sqs.IQueue) -> iam.ManagedPolicy:
    """For step processors: sqs:SendMessage on the queue, nothing else."""
    return iam.ManagedPolicy(
        scope,
        "ProducerPolicy",
        description=(
            "For step processors (Lambda, containers, jobs) - publish step results to "
            "relay's queue."
        ),
        statements=[
            iam.PolicyStatement(
                sid="PublishStepResults",
                actions=["sqs:SendMessage"],
                resources=[queue.queue_arn],
            )
        ],
    )


def dlq_operator_policy(
    scope: Construct, queue: sqs.IQueue, dlq: sqs.IQueue, workflows: list[str]
) -> iam.ManagedPolicy:
    """For the DLQ's operators: the DLQ tools, replay onto the queue, the execution reads."""
    # relay dlq stats, export, purge and replay onto the queue, with the execution reads
    # that tell which copies can still help; not the callback (the task role answers).
    return iam.ManagedPolicy(
        scope,
        "DlqOperatorPolicy",
        description=(
            "For operators - relay dlq stats, export and purge, relay replay onto the "
            "queue, and which workflow executions still wait."
        ),
        statements=[
            iam.PolicyStatement(
                sid="DeadLetters",
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ListDeadLetterSourceQueues",
                ],
                resources=[dlq.queue_arn],
            ),
            iam.PolicyStatement(
                sid="ReplayOntoTheQueue",
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                resources=[queue.queue_arn],
            ),
            iam.PolicyStatement(
                sid="ReadExecutions",
                actions=["transfer:ListExecutions", "transfer:DescribeExecution"],
                resources=workflows,
            ),
        ],
    )


def execution_role(scope: Construct) -> iam.Role:
    """The ECS agent's role: pull the image, write the log stream (the managed policy only)."""
    return iam.Role(
        scope,
        "ExecutionRole",
        description="ECS agent for relay tasks - pull the image, write the log stream.",
        assumed_by=ecs_tasks_of_this_account(),
        managed_policies=[
            iam.ManagedPolicy.from_managed_policy_arn(
                scope, "TaskExecutionPolicy", cdk.Fn.sub(EXECUTION_POLICY)
            )
        ],
    )
