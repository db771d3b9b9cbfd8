"""relay's Fargate task for `TransferFamilyRelay`: the container as the template defines it
(environment, hardening, health check, logs, stop timeout) and, with tracing, the AWS Distro
for OpenTelemetry collector beside it."""

from importlib.resources import files

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from relay.config import RunConfig, default_of, env_name
from relay.config.deployment import CALL_TIMEOUT_S, COLLECTOR_IMAGE, DeploymentSettings

USER = "10001:10001"
"""The image's non-root user (deploy/Dockerfile)."""
HTTP_PORT: int = default_of(RunConfig, "http_port")
OTLP_ENDPOINT = "http://127.0.0.1:4318"


def environment(
    settings: DeploymentSettings,
    queue: sqs.IQueue,
    dlq: sqs.IQueue,
    table: dynamodb.Table | None,
) -> dict[str, str]:
    """The relay container's environment: the queues, relay's settings, EMF, tracing."""
    environment = {
        "RELAY_QUEUE_URL": queue.queue_url,
        "RELAY_DLQ_URL": dlq.queue_url,
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
    if table is not None:
        environment[env_name("--dedupe-table")] = table.table_name
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


def _hardened(scope: Construct, name: str) -> ecs.LinuxParameters:
    parameters = ecs.LinuxParameters(scope, name, init_process_enabled=True)
    parameters.drop_capabilities(ecs.Capability.ALL)
    return parameters


def task_definition(
    scope: Construct,
    settings: DeploymentSettings,
    *,
    image: ecs.ContainerImage,
    task_role: iam.Role,
    execution_role: iam.Role,
    log_group: logs.LogGroup,
    environment: dict[str, str],
) -> ecs.FargateTaskDefinition:
    """The task: relay hardened (non-root, read-only root, no capabilities, init), its stop
    timeout above the grace and one call, and with tracing the collector beside it."""
    architecture = ecs.CpuArchitecture.ARM64 if settings.arm64 else ecs.CpuArchitecture.X86_64
    task = ecs.FargateTaskDefinition(
        scope,
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
        task_role=task_role.without_policy_updates(),
        execution_role=execution_role.without_policy_updates(),
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
        linux_parameters=_hardened(scope, "RelayLinuxParameters"),
        # SIGTERM drains for the grace; a call on the wire then is awaited for one call
        # timeout more; SIGKILL comes only after both.
        stop_timeout=cdk.Duration.seconds(settings.stop_timeout_s),
        port_mappings=[
            ecs.PortMapping(container_port=HTTP_PORT, name="http", protocol=ecs.Protocol.TCP)
        ],
        environment=environment,
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
            log_group=log_group,
            mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            max_buffer_size=cdk.Size.mebibytes(25),
        ),
    )
    relay.add_mount_points(
        ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)
    )
    if settings.tracing:
        collector = _collector(scope, task, log_group)
        # The collector starts first and stops last, so no span is lost.
        relay.add_container_dependencies(
            ecs.ContainerDependency(
                container=collector, condition=ecs.ContainerDependencyCondition.START
            )
        )
    return task


def _collector(
    scope: Construct, task: ecs.FargateTaskDefinition, log_group: logs.LogGroup
) -> ecs.ContainerDefinition:
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
        linux_parameters=_hardened(scope, "CollectorLinuxParameters"),
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
            log_group=log_group,
            mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            max_buffer_size=cdk.Size.mebibytes(5),
        ),
    )
