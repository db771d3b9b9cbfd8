"""deploy/cloudformation/relay.yaml keeps relay's invariants, for every value its parameters
allow: least privilege, a drain that SIGKILL never cuts short, relay dead-letters before SQS
does, and defaults that agree with relay's own (relay.config), so drift fails the build."""

from typing import Any

from relay.config import RUN_OPTIONS, env_name
from relay.config.deployment import max_receive_count, stop_timeout_s
from tests.deploy.support import SCENARIOS, is_cdk, resolve, resources, with_conditions

OPTIONS = {spec.flag: spec for spec in RUN_OPTIONS}
FARGATE_MAX_STOP_TIMEOUT = 120
QUEUE_ARN = {"Fn::GetAtt": ["Queue", "Arn"]}
DLQ_ARN = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
EXECUTION_POLICY_ARN = (
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
)
WORKFLOWS_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:transfer:${AWS::Region}:${AWS::AccountId}:workflow/*"
}


def _container(
    template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The container as deployed with these parameter values (defaults for the rest)."""
    deployed = with_conditions(template, parameters or {})
    (task,) = resources(deployed, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return container


def _environment(
    template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    container = _container(template, parameters)
    return {item["Name"]: item["Value"] for item in container["Environment"]}


def _grants(policy_document: dict[str, Any]) -> dict[frozenset[str], Any]:
    """Allowed actions → resource, from a policy document's statements."""
    grants: dict[frozenset[str], Any] = {}
    for statement in policy_document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource"} & set(statement)
        actions = statement["Action"]
        actions = frozenset([actions] if isinstance(actions, str) else actions)
        assert actions not in grants
        grants[actions] = statement["Resource"]
    return grants


def _allowed(template: dict[str, Any], name: str) -> list[str]:
    allowed = template["Parameters"][name]["AllowedValues"]
    return [str(value) for value in allowed]


def _choices(template: dict[str, Any], name: str, values: list[Any]) -> list[dict[str, Any]]:
    """Parameter values to deploy with: `values` for the hand-written template; for the
    construct's, the scenarios it was synthesized for that set `name`, and the defaults."""
    if not is_cdk(template):
        return [{name: value} for value in values]
    return [{}] + [parameters for parameters in SCENARIOS.values() if name in parameters]


def _queue(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def test_task_role_grants_exactly_what_relay_calls(template: dict[str, Any]) -> None:
    """With the defaults, the task role allows the four consumer actions on the queue,
    SendMessage and GetQueueAttributes on the DLQ and SendWorkflowStepState on the account's
    workflows, and nothing else."""
    role = with_conditions(template, {})["Resources"]["TaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    assert _grants(policy["PolicyDocument"]) == {
        frozenset(
            {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            }
        ): QUEUE_ARN,
        frozenset({"sqs:SendMessage", "sqs:GetQueueAttributes"}): DLQ_ARN,
        frozenset({"transfer:SendWorkflowStepState"}): WORKFLOWS_ARN,
    }
    attached = [
        name
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for name, policy in resources(template, kind).items()
        if {"Ref": "TaskRole"} in policy["Properties"].get("Roles", [])
    ]
    assert attached == []


def test_task_role_only_assumable_by_ecs_tasks(template: dict[str, Any]) -> None:
    """Only ecs-tasks.amazonaws.com may assume the task role, for tasks of this account."""
    trust = template["Resources"]["TaskRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
    }


def test_dlq_url_is_given_so_the_task_needs_no_get_queue_url(template: dict[str, Any]) -> None:
    """The container gets both queue URLs, so relay never calls GetQueueUrl (not granted)."""
    environment = _environment(template)
    assert environment["RELAY_QUEUE_URL"] == {"Ref": "Queue"}
    assert environment["RELAY_DLQ_URL"] == {"Ref": "DeadLetterQueue"}
    redrive = _queue(template, "Queue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == DLQ_ARN


def test_execution_role_is_separate_and_only_pulls_and_logs(template: dict[str, Any]) -> None:
    """The execution role differs from the task role and holds only the ECS execution policy."""
    task = next(iter(resources(template, "AWS::ECS::TaskDefinition").values()))["Properties"]
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    role = template["Resources"]["ExecutionRole"]["Properties"]
    assert "Policies" not in role
    assert role["ManagedPolicyArns"] == [{"Fn::Sub": EXECUTION_POLICY_ARN}]


def test_producer_policy_allows_only_send_message_on_the_queue(template: dict[str, Any]) -> None:
    """The producers' managed policy allows sqs:SendMessage on the queue and nothing else, and is
    an output."""
    policy = template["Resources"]["ProducerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert _grants(policy["Properties"]["PolicyDocument"]) == {
        frozenset({"sqs:SendMessage"}): QUEUE_ARN
    }
    assert template["Outputs"]["ProducerPolicyArn"]["Value"] == {"Ref": "ProducerPolicy"}


def test_stop_timeout_leaves_room_for_the_grace_and_one_call(template: dict[str, Any]) -> None:
    """For every allowed ShutdownGrace, the container's stopTimeout is above the grace relay is
    given plus its call timeout (a call on the wire when the grace ends is awaited, DESIGN §3)
    and within Fargate's 120 s, so SIGKILL never cuts a drain or a call short."""
    graces = _allowed(template, "ShutdownGrace") if not is_cdk(template) else []
    for chosen in _choices(template, "ShutdownGrace", graces):
        container = _container(template, chosen)
        environment = _environment(template, chosen)
        call_timeout = float(environment["RELAY_CALL_TIMEOUT"])
        given = float(resolve(template, environment["RELAY_SHUTDOWN_GRACE"], chosen))
        stop_timeout = resolve(template, container["StopTimeout"], chosen)
        assert given + call_timeout < stop_timeout <= FARGATE_MAX_STOP_TIMEOUT, chosen
        assert stop_timeout == stop_timeout_s(given), chosen


def test_redrive_max_receive_count_exceeds_max_receives(template: dict[str, Any]) -> None:
    """For every allowed MaxReceives, the redrive policy's maxReceiveCount is above the
    --max-receives relay is given, so relay dead-letters with its reason before SQS moves it."""
    allowed = _allowed(template, "MaxReceives") if not is_cdk(template) else []
    for chosen in _choices(template, "MaxReceives", allowed):
        redrive = with_conditions(template, chosen)["Resources"]["Queue"]["Properties"]
        environment = _environment(template, chosen)
        given = int(resolve(template, environment["RELAY_MAX_RECEIVES"], chosen))
        count = resolve(template, redrive["RedrivePolicy"]["maxReceiveCount"], chosen)
        assert count > given, chosen
        assert count == max_receive_count(given), chosen


def test_queue_visibility_timeout_exceeds_the_retry_budget(template: dict[str, Any]) -> None:
    """The queue's visibility timeout, at its default and its smallest allowed value, is above
    relay's retry budget, and relay is told the same visibility timeout."""
    parameter = template.get("Parameters", {}).get("VisibilityTimeout", {})
    bounds = [parameter.get("Default"), parameter.get("MinValue")]
    for chosen in _choices(template, "VisibilityTimeout", bounds):
        environment = _environment(template, chosen)
        budget = float(environment.get("RELAY_RETRY_BUDGET", OPTIONS["--retry-budget"].default))
        queue = with_conditions(template, chosen)["Resources"]["Queue"]["Properties"]
        queue_timeout = queue["VisibilityTimeout"]
        assert environment["RELAY_VISIBILITY_TIMEOUT"] in (queue_timeout, str(queue_timeout))
        assert resolve(template, queue_timeout, chosen) > budget, chosen


def test_parameter_defaults_are_relays_defaults(template: dict[str, Any]) -> None:
    """The template's defaults for relay's settings are relay's own (RUN_OPTIONS), and each is
    among the allowed values; the construct gives relay its own defaults."""
    if is_cdk(template):
        environment = _environment(template)
        for spec in RUN_OPTIONS:
            if spec.env in environment and spec.flag not in {"--log-format", "--emf-interval"}:
                assert spec.type(environment[spec.env]) == spec.default, spec.flag
        return
    for parameter, flag in [
        ("ShutdownGrace", "--shutdown-grace"),
        ("MaxReceives", "--max-receives"),
        ("VisibilityTimeout", "--visibility-timeout"),
        ("MaxInFlight", "--max-in-flight"),
        ("MaxRps", "--max-rps"),
        ("LogLevel", "--log-level"),
    ]:
        default = template["Parameters"][parameter]["Default"]
        expected = OPTIONS[flag].default
        assert OPTIONS[flag].type(default) == expected, parameter
        if "AllowedValues" in template["Parameters"][parameter]:
            assert str(default) in _allowed(template, parameter), parameter


def test_mapping_rows_match_the_allowed_values(cfn_template: dict[str, Any]) -> None:
    """Each allowed ShutdownGrace and MaxReceives has exactly one mapping row, so FindInMap never
    fails at deploy time, and each row holds what relay.config.deployment computes (the rule
    the construct uses)."""
    template = cfn_template
    for parameter in ("ShutdownGrace", "MaxReceives"):
        assert sorted(template["Mappings"][parameter], key=int) == sorted(
            _allowed(template, parameter), key=int
        )
    for grace, row in template["Mappings"]["ShutdownGrace"].items():
        assert row == {"StopTimeout": stop_timeout_s(int(grace))}, grace
    for receives, row in template["Mappings"]["MaxReceives"].items():
        assert row == {"MaxReceiveCount": max_receive_count(int(receives))}, receives


def test_container_environment_names_are_relay_settings(template: dict[str, Any]) -> None:
    """Every RELAY_* variable given to the container is one relay reads, JSON logs included."""
    known = {spec.env for spec in RUN_OPTIONS} | {env_name("--queue-url"), env_name("--dlq-url")}
    environment = _environment(template, {"EnableDedupeTable": "true"})
    assert {name for name in environment if name.startswith("RELAY_")} <= known
    assert environment["RELAY_LOG_FORMAT"] == "json"
    assert environment["AWS_REGION"] == {"Ref": "AWS::Region"}


def test_container_is_hardened(template: dict[str, Any]) -> None:
    """The container runs as a non-root user on a read-only root file system, with an init
    process, no capabilities and a writable /tmp volume."""
    container = _container(template)
    user = container["User"].split(":")[0]
    assert user not in {"0", "root", ""}
    assert container["ReadonlyRootFilesystem"] is True
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    assert container["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    (task,) = resources(template, "AWS::ECS::TaskDefinition").values()
    volumes = {volume["Name"] for volume in task["Properties"]["Volumes"]}
    mounts = {mount["ContainerPath"]: mount["SourceVolume"] for mount in container["MountPoints"]}
    assert mounts["/tmp"] in volumes


def test_health_check_uses_relay_healthcheck_on_the_http_port(template: dict[str, Any]) -> None:
    """ECS probes the container with `relay healthcheck`, which reads the port relay serves on."""
    container = _container(template)
    assert container["HealthCheck"]["Command"] == ["CMD", "relay", "healthcheck"]
    port = int(_environment(template).get("RELAY_HTTP_PORT", OPTIONS["--http-port"].default))
    assert [mapping["ContainerPort"] for mapping in container["PortMappings"]] == [port]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_service_deploys_rolling_with_rollback(template: dict[str, Any]) -> None:
    """The service starts new tasks before stopping old ones, rolls a failed deploy back, and
    leaves the task count to autoscaling unless told otherwise."""
    (service,) = resources(template, "AWS::ECS::Service").values()
    deployment = service["Properties"]["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert deployment["MaximumPercent"] == 200
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["Properties"]["LaunchType"] == "FARGATE"
    # No DesiredCount by default: autoscaling owns the count, so an update never resets it.
    assert "DesiredCount" not in with_conditions(template, {})["Resources"]["Service"]["Properties"]


def test_autoscaling_tracks_backlog_per_task_with_at_least_one_task(
    template: dict[str, Any],
) -> None:
    """Autoscaling keeps at least one task and tracks visible messages divided by running
    tasks."""
    (target,) = resources(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    minimum = target["Properties"]["MinCapacity"]
    assert resolve(template, minimum, {}) >= 1
    if not is_cdk(template):
        assert template["Parameters"][minimum["Ref"]]["MinValue"] >= 1
    (policy,) = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    configuration = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    metrics = {m["Id"]: m for m in configuration["CustomizedMetricSpecification"]["Metrics"]}
    returned = [m for m in metrics.values() if m.get("ReturnData", True)]
    assert len(returned) == 1
    stats = {
        m["MetricStat"]["Metric"]["MetricName"]: (metric_id, m["MetricStat"]["Metric"])
        for metric_id, m in metrics.items()
        if "MetricStat" in m
    }
    visible_id, visible = stats["ApproximateNumberOfMessagesVisible"]
    tasks_id, tasks = stats["RunningTaskCount"]
    assert visible["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}
    ]
    assert tasks["Namespace"] == "ECS/ContainerInsights"
    assert returned[0]["Expression"].replace(" ", "") == f"{visible_id}/{tasks_id}"


def test_queues_are_encrypted_and_dlq_keeps_messages_14_days(template: dict[str, Any]) -> None:
    """Both queues use SSE-SQS; the DLQ keeps its messages for SQS's maximum of 14 days."""
    for name in ("Queue", "DeadLetterQueue"):
        assert _queue(template, name)["SqsManagedSseEnabled"] is True
    assert _queue(template, "DeadLetterQueue")["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_outputs_name_the_queues_the_service_and_the_producer_policy(
    template: dict[str, Any],
) -> None:
    """The stack outputs the queue URL, the DLQ URL, the service name and the producer policy."""
    outputs = template["Outputs"]
    assert outputs["QueueUrl"]["Value"] == {"Ref": "Queue"}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["ServiceName"]["Value"] == {"Fn::GetAtt": ["Service", "Name"]}
    assert "ProducerPolicyArn" in outputs
