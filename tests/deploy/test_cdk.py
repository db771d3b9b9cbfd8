"""The CDK construct (relay.cdk) beyond the invariants it shares with the template: cdk-nag's
AwsSolutions checks pass with each finding answered, the example app synthesizes, the parts
both carry are one text, and its settings refuse what relay or Fargate would."""

import re
from importlib.resources import files
from typing import Any

import pytest
import yaml

from relay.config.deployment import DeploymentSettings
from relay.errors import ConfigError
from tests.deploy.support import normalize, resources, with_conditions

ACKNOWLEDGED = re.compile(r"AwsSolutions::AwsSolutions-[A-Z]+[0-9]+")


def test_cdk_nag_finds_nothing_unanswered(cdk_synth: dict[str, Any]) -> None:
    """cdk-nag's AwsSolutions pack reports no error and no warning on any scenario's stack nor
    on the example app: each finding the construct leaves is acknowledged with a reason."""
    assert cdk_synth["nag"] == []
    assert len(cdk_synth["scenarios"]) >= 8


def test_each_acknowledgment_carries_a_reason() -> None:
    """Every cdk-nag rule the construct acknowledges names an AwsSolutions rule and says why
    in a sentence (read from the construct's source, as a reviewer would)."""
    source = files("relay.cdk").joinpath("construct.py").read_text(encoding="utf-8")
    calls = re.findall(r"_acknowledge\(\s*self\.\w+,\s*(.*?)\n        \)", source, re.S)
    assert len(calls) >= 3
    for call in calls:
        assert len(re.sub(r"\s+", " ", call)) > 80, call


def test_the_example_app_synthesizes_one_relay_with_its_topic_and_table(
    cdk_synth: dict[str, Any],
) -> None:
    """examples/cdk_app.py synthesizes without an AWS account: one relay service, the dedupe
    table, callbacks on its one workflow, and every alarm notifying its SNS topic."""
    example = normalize(cdk_synth["example"])
    assert len(resources(example, "AWS::ECS::Service")) == 1
    assert len(resources(example, "AWS::DynamoDB::Table")) == 1
    (topic,) = resources(example, "AWS::SNS::Topic")
    alarms = resources(example, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 5
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic}]
    role = example["Resources"]["TaskRole"]["Properties"]
    (callback,) = [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "transfer:SendWorkflowStepState"
    ]
    assert callback["Resource"].startswith("arn:aws:transfer:eu-west-1:123456789012:workflow/")
    assert "DlqOperatorPolicyArn" in example["Outputs"]


def test_the_dashboard_is_the_templates_text(cfn_template: dict[str, Any]) -> None:
    """The construct's dashboard body is the template's, character for character, so one
    dashboard is kept (the construct writes the numbers in)."""
    body, _ = cfn_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    ours = files("relay.cdk").joinpath("dashboard_body.txt").read_text(encoding="utf-8")
    assert ours == body


def test_the_collector_configuration_is_the_templates(cfn_template: dict[str, Any]) -> None:
    """The construct's collector configuration is the template's, character for character."""
    deployed = with_conditions(cfn_template, {"EnableTracing": "true"})
    (task,) = resources(deployed, "AWS::ECS::TaskDefinition").values()
    (collector,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] != "relay"]
    config = {e["Name"]: e["Value"] for e in collector["Environment"]}["AOT_CONFIG_CONTENT"]
    ours = files("relay.cdk").joinpath("collector.yaml").read_text(encoding="utf-8")
    assert ours == config
    assert yaml.safe_load(ours)["service"]["pipelines"]["traces"]["exporters"] == ["awsxray"]


@pytest.mark.parametrize(
    "settings",
    [
        {"cpu": 256, "memory_mib": 4096},
        {"min_tasks": 0},
        {"min_tasks": 5, "max_tasks": 4},
        {"shutdown_grace_s": 106},
        {"visibility_timeout_s": 20},
        {"log_retention_days": 31},
        {"emf_namespace": "AWS/relay"},
        {"log_level": "LOUD"},
        {"tracing_sample_ratio": 1.5},
        {"workflow_arns": ("w-0123456789abcdef0",)},
        {"sns_topic_arns": ("arn:aws:sqs:eu-west-1:111122223333:q",)},
        {"producer_account_ids": ("1111-2222-3333",)},
        {"workflow_arns": "arn:aws:transfer:eu-west-1:123456789012:workflow/w-0123456789abcdef0"},
    ],
)
def test_settings_refuse_what_relay_or_fargate_would(settings: dict[str, Any]) -> None:
    """DeploymentSettings refuses, before anything is synthesized, a task size Fargate does not
    offer, a grace whose stopTimeout passes Fargate's 120 s, relay's out-of-range settings and
    ill-formed ARNs or account ids, as the template's parameters and rules do."""
    with pytest.raises(ConfigError):
        DeploymentSettings(**settings)


def test_settings_default_to_the_templates_defaults(cfn_template: dict[str, Any]) -> None:
    """Each setting that stands for a template parameter defaults to that parameter's default."""
    defaults = DeploymentSettings()
    parameters = cfn_template["Parameters"]
    assert defaults.cpu == int(parameters["Cpu"]["Default"])
    assert defaults.memory_mib == int(parameters["Memory"]["Default"])
    assert defaults.min_tasks == parameters["MinTasks"]["Default"]
    assert defaults.max_tasks == parameters["MaxTasks"]["Default"]
    assert defaults.backlog_per_task_target == parameters["BacklogPerTaskTarget"]["Default"]
    assert defaults.shutdown_grace_s == float(parameters["ShutdownGrace"]["Default"])
    assert defaults.max_receives == int(parameters["MaxReceives"]["Default"])
    assert defaults.log_retention_days == parameters["LogRetentionDays"]["Default"]
    assert defaults.oldest_message_alarm_s == parameters["OldestMessageAlarmSeconds"]["Default"]
    assert defaults.stop_timeout_s == 40
    assert defaults.max_receive_count == 15
