"""Tracing in the template (DESIGN §12): off by default; with EnableTracing, the AWS Distro for
OpenTelemetry collector beside relay (pinned, loopback only, exporting to X-Ray), relay told to
trace to it, and the task role allowed to write to X-Ray, only then."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import is_cdk, resources, stands_for, with_conditions

ON = {"EnableTracing": "true"}
COLLECTOR_IMAGE = re.compile(
    r"public\.ecr\.aws/aws-observability/aws-otel-collector:v\d+\.\d+\.\d+"
)
RELAY_SPAN_ATTRIBUTES = {"relay.workflow_id", "relay.execution_id", "relay.outcome", "relay.reason"}
"""Attributes relay's `process` span carries (tests/integration/test_tracing.py proves them)."""
DEPLOY_README = Path(__file__).resolve().parents[2] / "deploy" / "README.md"


def _containers(deployed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (task,) = resources(deployed, "AWS::ECS::TaskDefinition").values()
    return {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in container.get("Environment", [])}


def _xray_statements(deployed: dict[str, Any]) -> list[dict[str, Any]]:
    role = deployed["Resources"]["TaskRole"]["Properties"]
    return [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if any(str(action).startswith("xray:") for action in statement["Action"])
    ]


def _collector_config(deployed: dict[str, Any]) -> dict[str, Any]:
    collector = _containers(deployed)["otel-collector"]
    config = yaml.safe_load(_environment(collector)["AOT_CONFIG_CONTENT"])
    assert isinstance(config, dict)
    return config


def test_tracing_is_off_by_default(template: dict[str, Any]) -> None:
    """With the defaults: relay alone in the task, told nothing of tracing (no RELAY_TRACING,
    no OTEL_*), and no X-Ray permission."""
    if not is_cdk(template):
        assert template["Parameters"]["EnableTracing"]["Default"] == "false"
    else:
        assert stands_for(template, "EnableTracing", {}) is False
    deployed = with_conditions(template, {})
    containers = _containers(deployed)
    assert list(containers) == ["relay"]
    environment = _environment(containers["relay"])
    assert not [n for n in environment if n.startswith("OTEL_") or n == "RELAY_TRACING"]
    assert "DependsOn" not in containers["relay"]
    assert _xray_statements(deployed) == []


def test_the_collector_is_pinned_hardened_and_never_stops_the_callbacks(
    template: dict[str, Any],
) -> None:
    """With tracing on, the collector is the AWS Distro's image at a pinned version, not
    essential (a failing collector costs spans, not callbacks) and restarted by ECS, on a
    read-only root file system without capabilities, logging beside relay."""
    containers = _containers(with_conditions(template, ON))
    assert list(containers) == ["relay", "otel-collector"]
    collector = containers["otel-collector"]
    assert COLLECTOR_IMAGE.fullmatch(collector["Image"]), collector["Image"]
    assert collector["Essential"] is False
    assert collector["RestartPolicy"]["Enabled"] is True
    assert collector["ReadonlyRootFilesystem"] is True
    assert collector["LinuxParameters"]["Capabilities"]["Drop"] == ["ALL"]
    assert collector["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert "PortMappings" not in collector
    assert containers["relay"]["Essential"] is True
    assert containers["relay"]["DependsOn"] == [
        {"ContainerName": "otel-collector", "Condition": "START"}
    ]


def test_relay_exports_to_where_the_collector_listens_on_loopback(
    template: dict[str, Any],
) -> None:
    """relay is told to trace, over OTLP/HTTP to the endpoint the collector's receiver listens
    on, which is on 127.0.0.1 only (as is its health check), sampling as the parameter says."""
    deployed = with_conditions(template, ON)
    environment = _environment(_containers(deployed)["relay"])
    config = _collector_config(deployed)
    listen = config["receivers"]["otlp"]["protocols"]
    assert set(listen) == {"http"}
    assert listen["http"]["endpoint"] == "127.0.0.1:4318"
    assert config["extensions"]["health_check"]["endpoint"].startswith("127.0.0.1:")
    assert environment["RELAY_TRACING"] == "true"
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{listen['http']['endpoint']}"
    assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert environment["OTEL_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert environment["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    ratio = stands_for(template, "TracingSampleRatio", ON)
    assert environment["OTEL_TRACES_SAMPLER_ARG"] == (
        ratio if not is_cdk(template) else f"{ratio:g}"
    )
    if not is_cdk(template):
        ratio = template["Parameters"]["TracingSampleRatio"]
        assert (ratio["MinValue"], ratio["Default"], ratio["MaxValue"]) == (0, 1, 1)
    else:
        assert ratio == 1


def test_the_collector_sends_traces_to_x_ray_with_relays_ids_as_annotations(
    template: dict[str, Any],
) -> None:
    """The collector's one pipeline takes OTLP to X-Ray, and indexes as annotations exactly the
    relay attributes deploy/README's search uses (dots become underscores)."""
    config = _collector_config(with_conditions(template, ON))
    assert config["service"]["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["batch/traces"], "exporters": ["awsxray"]}
    }
    indexed = set(config["exporters"]["awsxray"]["indexed_attributes"])
    assert indexed == RELAY_SPAN_ATTRIBUTES
    readme = DEPLOY_README.read_text(encoding="utf-8")
    for name in indexed:
        assert f"annotation.{name.replace('.', '_')}" in readme, name


@pytest.mark.parametrize(("parameters", "granted"), [({}, False), (ON, True)])
def test_the_task_role_writes_to_x_ray_only_with_tracing(
    template: dict[str, Any], parameters: dict[str, Any], granted: bool
) -> None:
    """With tracing on, the task role may PutTraceSegments and PutTelemetryRecords (X-Ray takes
    no resource-level permissions) and nothing more of X-Ray; off, nothing of X-Ray."""
    statements = _xray_statements(with_conditions(template, parameters))
    if not granted:
        assert statements == []
        return
    (statement,) = statements
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert statement["Resource"] == "*"
    assert not {"NotAction", "NotResource"} & set(statement)
