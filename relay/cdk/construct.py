"""`TransferFamilyRelay`: the queue and its DLQ (or existing ones), the least-privilege roles,
the Fargate service scaling on backlog per task, and (in `relay.cdk.monitoring`) the alarms and
the dashboard. Each resource mirrors the CloudFormation template's of the same name, and the
invariant tests in tests/deploy/ run on both."""

from collections.abc import Sequence
from importlib.resources import files
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from relay.cdk.monitoring import add_alarms, add_dashboard
from relay.config import RunConfig, default_of, env_name
from relay.config.deployment import CALL_TIMEOUT_S, COLLECTOR_IMAGE, DeploymentSettings
from relay.dedupe import KEY, TTL_ATTRIBUTE
from relay.errors import ConfigError

USER = "10001:10001"
"""The image's non-root user (deploy/Dockerfile)."""
HTTP_PORT: int = default_of(RunConfig, "http_port")
ALL_WORKFLOWS = "arn:${AWS::Partition}:transfer:${AWS::Region}:${AWS::AccountId}:workflow/*"
EXECUTION_POLICY = (
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
)
OTLP_ENDPOINT = "http://127.0.0.1:4318"


def _ecs_tasks_of_this_account() -> iam.ServicePrincipal:
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
        self.task_role = self._task_role()
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            description="ECS agent for relay tasks - pull the image, write the log stream.",
            assumed_by=_ecs_tasks_of_this_account(),
            managed_policies=[
                iam.ManagedPolicy.from_managed_policy_arn(
                    self, "TaskExecutionPolicy", cdk.Fn.sub(EXECUTION_POLICY)
                )
            ],
        )
        self.producer_policy = self._producer_policy()
        self.dlq_operator_policy = self._dlq_operator_policy()
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
        self.task_definition = self._task_definition(image)
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
        self._autoscaling()
        self._acknowledge_findings()
        self.alarms = add_alarms(self, alarm_topic)
        self.dashboard = add_dashboard(self)

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
        self._queues_policy(main, dlq)
        return main, dlq

    def _queues_policy(self, queue: sqs.Queue, dlq: sqs.Queue) -> None:
        settings = self.settings
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
            self,
            "QueuesPolicy",
            queues=[queue.queue_url, dlq.queue_url],
            policy_document={"Version": "2012-10-17", "Statement": statements},
        )

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

    def _task_role(self) -> iam.Role:
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
                        resources=[self.queue.queue_arn],
                    ),
                    # No sqs:GetQueueUrl: RELAY_DLQ_URL is set. GetQueueAttributes: relay sizes
                    # each copy to the DLQ's own limit.
                    iam.PolicyStatement(
                        sid="DeadLetter",
                        actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                        resources=[self.dead_letter_queue.queue_arn],
                    ),
                    iam.PolicyStatement(
                        sid="SendWorkflowStepState",
                        actions=["transfer:SendWorkflowStepState"],
                        resources=self.workflows,
                    ),
                ]
            )
        }
        if self.dedupe_table is not None:
            policies["dedupe-table"] = iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="DedupeTable",
                        actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                        resources=[self.dedupe_table.table_arn],
                    )
                ]
            )
        if self.settings.tracing:
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
            self,
            "TaskRole",
            description=(
                "relay tasks - consume the queue, dead-letter, send workflow step callbacks."
            ),
            assumed_by=_ecs_tasks_of_this_account(),
            inline_policies=policies,
        )

    def _producer_policy(self) -> iam.ManagedPolicy:
        return iam.ManagedPolicy(
            self,
            "ProducerPolicy",
            description=(
                "For step processors (Lambda, containers, jobs) - publish step results to "
                "relay's queue."
            ),
            statements=[
                iam.PolicyStatement(
                    sid="PublishStepResults",
                    actions=["sqs:SendMessage"],
                    resources=[self.queue.queue_arn],
                )
            ],
        )

    def _dlq_operator_policy(self) -> iam.ManagedPolicy:
        # relay dlq stats, export, purge and replay onto the queue, with the execution reads
        # that tell which copies can still help; not the callback (the task role answers).
        return iam.ManagedPolicy(
            self,
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
                    resources=[self.dead_letter_queue.queue_arn],
                ),
                iam.PolicyStatement(
                    sid="ReplayOntoTheQueue",
                    actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                    resources=[self.queue.queue_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadExecutions",
                    actions=["transfer:ListExecutions", "transfer:DescribeExecution"],
                    resources=self.workflows,
                ),
            ],
        )

    # --- the task ------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        settings = self.settings
        environment = {
            "RELAY_QUEUE_URL": self.queue.queue_url,
            "RELAY_DLQ_URL": self.dead_letter_queue.queue_url,
            env_name("--shutdown-grace"): f"{settings.shutdown_grace_s:g}",
            # Fixed: stopTimeout leaves room for one call of this length after the grace.
            env_name("--call-timeout"): f"{CALL_TIMEOUT_S:g}",
            env_name("--max-receives"): str(settings.max_receives),
            env_name("--visibility-timeout"): str(settings.visibility_timeout_s),
            env_name("--max-in-flight"): str(settings.max_in_flight),
            env_name("--max-rps"): f"{settings.max_rps:g}",
            env_name("--log-format"): "json",
            env_name("--log-level"): settings.log_level,
            # EMF documents on stdout once a minute; CloudWatch Logs extracts the metrics.
            env_name("--emf-interval"): "60",
            env_name("--emf-namespace"): settings.emf_namespace,
            "AWS_REGION": cdk.Aws.REGION,
        }
        if self.dedupe_table is not None:
            environment[env_name("--dedupe-table")] = self.dedupe_table.table_name
        if settings.tracing:
            environment |= {
                env_name("--tracing"): "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_ENDPOINT,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": cdk.Aws.STACK_NAME,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": f"{settings.tracing_sample_ratio:g}",
            }
        return environment

    def _hardened(self, name: str) -> ecs.LinuxParameters:
        parameters = ecs.LinuxParameters(self, name, init_process_enabled=True)
        parameters.drop_capabilities(ecs.Capability.ALL)
        return parameters

    def _task_definition(self, image: ecs.ContainerImage) -> ecs.FargateTaskDefinition:
        settings = self.settings
        architecture = ecs.CpuArchitecture.ARM64 if settings.arm64 else ecs.CpuArchitecture.X86_64
        task = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=cdk.Aws.STACK_NAME,
            cpu=settings.cpu,
            memory_limit_mib=settings.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=architecture,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            # Fixed policies: nothing CDK would grant by itself (log writes, image pulls) is
            # added; the execution role's managed policy covers both.
            task_role=self.task_role.without_policy_updates(),
            execution_role=self.execution_role.without_policy_updates(),
        )
        # The root file system is read-only; /tmp (task storage) is the one writable place.
        task.add_volume(name="tmp")
        relay = task.add_container(
            "relay",
            container_name="relay",
            image=image,
            essential=True,
            user=USER,
            readonly_root_filesystem=True,
            linux_parameters=self._hardened("RelayLinuxParameters"),
            # SIGTERM drains for the grace; a call on the wire then is awaited for one call
            # timeout more; SIGKILL comes only after both.
            stop_timeout=cdk.Duration.seconds(settings.stop_timeout_s),
            port_mappings=[
                ecs.PortMapping(container_port=HTTP_PORT, name="http", protocol=ecs.Protocol.TCP)
            ],
            environment=self._environment(),
            health_check=ecs.HealthCheck(
                command=["CMD", "relay", "healthcheck"],
                interval=cdk.Duration.seconds(15),
                timeout=cdk.Duration.seconds(5),
                retries=3,
                start_period=cdk.Duration.seconds(30),
            ),
            # A slow log pipe must never stall callbacks; metrics still count everything.
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="relay",
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=cdk.Size.mebibytes(25),
            ),
        )
        relay.add_mount_points(
            ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)
        )
        if settings.tracing:
            collector = self._collector(task)
            # The collector starts first and stops last, so no span is lost.
            relay.add_container_dependencies(
                ecs.ContainerDependency(
                    container=collector, condition=ecs.ContainerDependencyCondition.START
                )
            )
        return task

    def _collector(self, task: ecs.FargateTaskDefinition) -> ecs.ContainerDefinition:
        # Not essential: a collector that fails costs spans, never callbacks; ECS restarts it.
        config = files("relay.cdk").joinpath("collector.yaml").read_text(encoding="utf-8")
        return task.add_container(
            "otel-collector",
            container_name="otel-collector",
            image=ecs.ContainerImage.from_registry(COLLECTOR_IMAGE),
            essential=False,
            enable_restart_policy=True,
            restart_attempt_period=cdk.Duration.seconds(60),
            readonly_root_filesystem=True,
            linux_parameters=self._hardened("CollectorLinuxParameters"),
            environment={"AWS_REGION": cdk.Aws.REGION, "AOT_CONFIG_CONTENT": config},
            health_check=ecs.HealthCheck(
                command=["CMD", "/healthcheck"],
                interval=cdk.Duration.seconds(15),
                timeout=cdk.Duration.seconds(5),
                retries=3,
                start_period=cdk.Duration.seconds(10),
            ),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="otel",
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=cdk.Size.mebibytes(5),
            ),
        )

    # --- autoscaling on backlog per task -------------------------------------------------------

    def _autoscaling(self) -> None:
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
                                    "Dimensions": self.service_dimensions(),
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

    def service_dimensions(self) -> list[dict[str, str]]:
        """The ClusterName and ServiceName dimensions of the service's metrics."""
        return [
            {"Name": "ClusterName", "Value": self.cluster.cluster_name},
            {"Name": "ServiceName", "Value": self.service.service_name},
        ]

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
