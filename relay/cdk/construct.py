"""`TransferFamilyRelay`: the queue and its DLQ (or existing ones), the least-privilege roles,
the Fargate service scaling on backlog per task, and (in `relay.cdk.monitoring`) the alarms and
the dashboard. Each resource mirrors the CloudFormation template's of the same name, and the
invariant tests in tests/deploy/ run on both."""

from collections.abc import Sequence
from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from relay.cdk import access, task
from relay.cdk.monitoring import ServiceNames, add_alarms, add_dashboard, service_dimensions
from relay.config.deployment import DeploymentSettings
from relay.dedupe import KEY, TTL_ATTRIBUTE
from relay.errors import ConfigError

ALL_WORKFLOWS = "arn:${AWS::Partition}:transfer:${AWS::Region}:${AWS::AccountId}:workflow/*"


def _acknowledge(construct: Construct, rule: str, reason: str) -> None:
    """Answers a cdk-nag AwsSolutions finding on `construct`, with the reason (no cdk-nag
    import: CDK's own Validations carry it)."""
    cdk.Validations.of(construct).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason)
    )


WORKFLOWS_FINDING = (
    "IAM5[Resource::arn:<AWS::Partition>:transfer:<AWS::Region>:<AWS::AccountId>:workflow/*]"
)
WORKFLOWS_REASON = (
    "No workflow_arns given: relay answers every workflow of the account in the region, as a "
    "shared relay must; name the workflows to narrow it (deploy/README.md, Workflows)."
)


class TransferFamilyRelay(Construct):
    """relay on ECS Fargate: queue and DLQ, roles, service, autoscaling, EMF, five alarms, a
    dashboard, an optional fleet dedupe table and tracing sidecar, and the producer and DLQ
    operator managed policies. Settings and defaults: `DeploymentSettings`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        image: ecs.ContainerImage,
        vpc: ec2.IVpc | None = None,
        cluster: ecs.ICluster | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        assign_public_ip: bool = False,
        desired_count: int | None = None,
        queue: sqs.IQueue | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        alarm_topic: sns.ITopic | None = None,
        settings: DeploymentSettings | None = None,
    ) -> None:
        """`image`: relay's image (a tag or digest, never `latest`). `cluster`: an existing one
        (Container Insights on), else one is created in `vpc`. `vpc_subnets` and
        `security_groups`: where the tasks run (outbound HTTPS only). `queue` and
        `dead_letter_queue`: existing queues (both or neither; their policies stay yours),
        else the construct creates them. `alarm_topic`: notified on ALARM and OK."""
        super().__init__(scope, construct_id)
        self.settings = settings = settings or DeploymentSettings()
        if (cluster is None) == (vpc is None):
            raise ConfigError("give either cluster (an existing one) or vpc (to create one)")
        if (queue is None) != (dead_letter_queue is None):
            raise ConfigError("give both queue and dead_letter_queue, or neither")
        self.queue, self.dead_letter_queue = self._queues(queue, dead_letter_queue)
        self.workflows: list[str] = list(settings.workflow_arns) or [cdk.Fn.sub(ALL_WORKFLOWS)]
        self.dedupe_table = self._dedupe_table() if settings.dedupe_table else None
        self.task_role = access.task_role(
            self, settings, self.queue, self.dead_letter_queue, self.workflows, self.dedupe_table
        )
        self.execution_role = access.execution_role(self)
        self.producer_policy = access.producer_policy(self, self.queue)
        self.dlq_operator_policy = access.dlq_operator_policy(
            self, self.queue, self.dead_letter_queue, self.workflows
        )
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=cdk.Fn.sub("/ecs/${AWS::StackName}"),
            # The log lines are the record of what relay did: kept like the queues; a first
            # create that rolls back removes the group, or its fixed name would block a retry.
            removal_policy=cdk.RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        cast(
            logs.CfnLogGroup, self.log_group.node.default_child
        ).retention_in_days = settings.log_retention_days
        self.cluster = cluster or ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            # The scaling policy, an alarm and the dashboard read RunningTaskCount from it.
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_definition = task.task_definition(
            self,
            settings,
            image=image,
            task_role=self.task_role,
            execution_role=self.execution_role,
            log_group=self.log_group,
            environment=task.environment(
                settings, self.queue, self.dead_letter_queue, self.dedupe_table
            ),
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            platform_version=ecs.FargatePlatformVersion.LATEST,
            desired_count=desired_count,
            # New tasks start before old ones stop; a deploy that never turns healthy rolls back.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
            assign_public_ip=assign_public_ip,
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        names = ServiceNames(
            queue=self.queue.queue_name,
            dead_letter_queue=self.dead_letter_queue.queue_name,
            cluster=self.cluster.cluster_name,
            service=self.service.service_name,
        )
        self._autoscaling(names)
        self._acknowledge_findings()
        self.alarms = add_alarms(self, settings, names, alarm_topic)
        self.dashboard = add_dashboard(self, settings, names)

    def _acknowledge_findings(self) -> None:
        # Each cdk-nag AwsSolutions finding this construct leaves, with why (deploy/README.md,
        # "Checks", lists them too).
        if not self.settings.workflow_arns:
            _acknowledge(self.task_role, WORKFLOWS_FINDING, WORKFLOWS_REASON)
            _acknowledge(self.dlq_operator_policy, WORKFLOWS_FINDING, WORKFLOWS_REASON)
        if self.settings.tracing:
            _acknowledge(
                self.task_role,
                "IAM5[Resource::*]",
                "xray:PutTraceSegments and xray:PutTelemetryRecords take no resource-level "
                "permissions; the task role gets them only with tracing on.",
            )
        _acknowledge(
            self.execution_role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonECSTaskExecutionRolePolicy]",
            "The ECS agent's role: pull the image and write the log stream, which is exactly "
            "what AmazonECSTaskExecutionRolePolicy allows; the task role has no managed policy.",
        )
        _acknowledge(
            self.task_definition,
            "ECS2",
            "The environment holds relay's settings, the queue URLs and table name, never a "
            "secret: relay takes its AWS credentials from the task role.",
        )
        if self.dedupe_table is not None:
            _acknowledge(
                self.dedupe_table,
                "DDB3",
                "No point-in-time recovery: every item expires within --dedupe-ttl (1 h); a "
                "restore would only bring back stale claims.",
            )

    # --- queues --------------------------------------------------------------------------------

    def _queues(
        self, queue: sqs.IQueue | None, dead_letter_queue: sqs.IQueue | None
    ) -> tuple[sqs.IQueue, sqs.IQueue]:
        settings = self.settings
        if queue is not None and dead_letter_queue is not None:
            if settings.sns_topic_arns or settings.producer_account_ids:
                raise ConfigError(
                    "sns_topic_arns and producer_account_ids write the queue policy, which "
                    "existing queues keep as their owner wrote it: grant them there"
                )
            return queue, dead_letter_queue
        dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            # Dead-letter copies are the record of what failed: kept if the stack goes.
            removal_policy=cdk.RemovalPolicy.RETAIN,
            retention_period=cdk.Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
        )
        main = sqs.Queue(
            self,
            "Queue",
            removal_policy=cdk.RemovalPolicy.RETAIN,
            visibility_timeout=cdk.Duration.seconds(settings.visibility_timeout_s),
            receive_message_wait_time=cdk.Duration.seconds(20),
            # 4 days: a result that comes too late after an outage is still dead-lettered as
            # expired, with its ids, instead of vanishing unseen.
            retention_period=cdk.Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dlq, max_receive_count=settings.max_receive_count
            ),
        )
        access.add_queues_policy(self, settings, main, dlq)
        return main, dlq

    def _dedupe_table(self) -> dynamodb.Table:
        # Claims and delivered marks that expire within --dedupe-ttl: nothing worth keeping.
        return dynamodb.Table(
            self,
            "DedupeTable",
            partition_key=dynamodb.Attribute(name=KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

    # --- IAM -----------------------------------------------------------------------------------

    # --- the task ------------------------------------------------------------------------------

    # --- autoscaling on backlog per task -------------------------------------------------------

    def _autoscaling(self, names: ServiceNames) -> None:
        settings = self.settings
        target = appscaling.CfnScalableTarget(
            self,
            "ScalableTarget",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=cdk.Fn.sub(
                "service/${ClusterNameValue}/${ServiceNameValue}",
                {
                    "ClusterNameValue": self.cluster.cluster_name,
                    "ServiceNameValue": self.service.service_name,
                },
            ),
            min_capacity=settings.min_tasks,
            max_capacity=settings.max_tasks,
        )
        # Application Auto Scaling's documented "SQS backlog per task" metric math.
        policy = appscaling.CfnScalingPolicy(
            self,
            "BacklogPerTaskScaling",
            policy_name=cdk.Fn.sub("${AWS::StackName}-backlog-per-task"),
            policy_type="TargetTrackingScaling",
            scaling_target_id=target.ref,
        )
        # CloudFormation's own shape (as in the template); jsii's structs want no nesting.
        policy.add_property_override(
            "TargetTrackingScalingPolicyConfiguration",
            {
                "TargetValue": settings.backlog_per_task_target,
                "ScaleOutCooldown": 60,
                "ScaleInCooldown": 300,
                "CustomizedMetricSpecification": {
                    "Metrics": [
                        {
                            "Id": "visible",
                            "Label": "Messages waiting on the queue",
                            "ReturnData": False,
                            "MetricStat": {
                                "Stat": "Sum",
                                "Metric": {
                                    "Namespace": "AWS/SQS",
                                    "MetricName": "ApproximateNumberOfMessagesVisible",
                                    "Dimensions": [
                                        {"Name": "QueueName", "Value": self.queue.queue_name}
                                    ],
                                },
                            },
                        },
                        {
                            "Id": "tasks",
                            "Label": "Running relay tasks",
                            "ReturnData": False,
                            "MetricStat": {
                                "Stat": "Average",
                                "Metric": {
                                    "Namespace": "ECS/ContainerInsights",
                                    "MetricName": "RunningTaskCount",
                                    "Dimensions": service_dimensions(names),
                                },
                            },
                        },
                        {
                            "Id": "backlog_per_task",
                            "Label": "Backlog per task",
                            "Expression": "visible / tasks",
                            "ReturnData": True,
                        },
                    ]
                },
            },
        )

    # --- outputs -------------------------------------------------------------------------------

    def add_outputs(self, *, export: bool = True) -> None:
        """The template's outputs, on the stack (one relay per stack when exported: the export
        names are `<stack>-QueueUrl`, ...)."""
        stack = cdk.Stack.of(self)

        def output(name: str, value: str, description: str | None = None) -> None:
            exported = cdk.Fn.sub("${AWS::StackName}-" + name) if export else None
            cdk.CfnOutput(stack, name, value=value, description=description, export_name=exported)

        output("QueueUrl", self.queue.queue_url, "Where step processors publish.")
        cdk.CfnOutput(stack, "QueueArn", value=self.queue.queue_arn)
        output("DeadLetterQueueUrl", self.dead_letter_queue.queue_url, "For relay dlq / replay.")
        cdk.CfnOutput(stack, "ServiceName", value=self.service.service_name)
        cdk.CfnOutput(stack, "ClusterName", value=self.cluster.cluster_name)
        cdk.CfnOutput(stack, "TaskRoleArn", value=self.task_role.role_arn)
        cdk.CfnOutput(stack, "LogGroupName", value=self.log_group.log_group_name)
        cdk.CfnOutput(stack, "DashboardName", value=self.dashboard.ref)
        if self.dedupe_table is not None:
            cdk.CfnOutput(stack, "DedupeTableName", value=self.dedupe_table.table_name)
        output("ProducerPolicyArn", self.producer_policy.managed_policy_arn)
        output("DlqOperatorPolicyArn", self.dlq_operator_policy.managed_policy_arn)
