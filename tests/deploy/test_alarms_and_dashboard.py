"""The template's alarms and dashboard read only metrics relay writes (relay.emf.EMF_METRICS,
the table the EMF writer renders), with exactly their dimensions; each alarm is one an operator
acts on, with its threshold a parameter and its missing-data rule chosen (DESIGN §6)."""

import re
from typing import Any

import pytest

from relay.config import RUN_OPTIONS
from relay.emf import EMF_METRICS, NO_REASON
from relay.outcomes import Outcome, Reason
from tests.deploy.support import (
    ROOT,
    MetricUse,
    alarm_metrics,
    dashboard_body,
    dashboard_metrics,
    is_cdk,
    resources,
    stands_for,
    with_conditions,
)

OPTIONS = {spec.flag: spec for spec in RUN_OPTIONS}
README = ROOT / "deploy" / "README.md"
SOURCE_QUEUE_NAME = {"Fn::GetAtt": ["Queue", "QueueName"]}
DLQ_NAME = {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
# PutMetricAlarm takes at most 10 MetricStat queries; alarms cannot use SEARCH.
ALARM_MAX_METRICS = 10
ALARMS = {
    "DeadLetterAlarm",
    "OpenCircuitsAlarm",
    "MessagesStuckAlarm",
    "ThrottledShareAlarm",
    "RunningTasksAlarm",
}


def _alarm(template: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(template["Resources"][name]["Properties"])


def _queries(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {query["Id"]: query for query in alarm["Metrics"]}


def _namespace(template: dict[str, Any]) -> Any:
    """relay's namespace as the alarms and the dashboard name it."""
    return stands_for(template, "EmfNamespace", {})


def _default(template: dict[str, Any], name: str) -> Any:
    """A threshold's default: the parameter's, or the construct's setting's."""
    if is_cdk(template):
        return stands_for(template, name, {})
    return template["Parameters"][name]["Default"]


def _relay_uses(template: dict[str, Any], uses: list[MetricUse]) -> list[MetricUse]:
    return [use for use in uses if use.namespace == _namespace(template)]


def _environment(template: dict[str, Any]) -> dict[str, Any]:
    deployed = with_conditions(template, {})
    (task,) = resources(deployed, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return {item["Name"]: item["Value"] for item in container["Environment"]}


@pytest.mark.parametrize("source", ["alarms", "dashboard"])
def test_every_relay_metric_named_is_one_relay_writes(
    template: dict[str, Any], source: str
) -> None:
    """Every metric in the EMF namespace that the alarms or the dashboard read is in
    EMF_METRICS with exactly its dimension set, on the source queue's name, and with outcomes
    and reasons relay uses."""
    uses = alarm_metrics(template) if source == "alarms" else dashboard_metrics(template)
    relay_uses = _relay_uses(template, uses)
    assert len(relay_uses) >= 5, "the reader found almost nothing: check it"
    outcomes = {outcome.value for outcome in Outcome}
    reasons = {reason.value for reason in Reason} | {NO_REASON}
    for use in relay_uses:
        assert use.name in EMF_METRICS, (use.where, use.name)
        assert sorted(use.dimensions) == sorted(EMF_METRICS[use.name].dimensions), (
            use.where,
            use.name,
        )
        assert use.dimensions["QueueName"] == (SOURCE_QUEUE_NAME,), (use.where, use.name)
        assert set(use.dimensions.get("Outcome", ())) <= outcomes, use.where
        assert set(use.dimensions.get("Reason", ())) <= reasons, use.where


@pytest.mark.parametrize("source", ["alarms", "dashboard"])
def test_relay_metrics_are_read_only_through_the_namespace_parameter(
    template: dict[str, Any], source: str
) -> None:
    """No alarm or graph spells relay's namespace out, so changing EmfNamespace moves them all;
    every other namespace is an AWS service's."""
    uses = alarm_metrics(template) if source == "alarms" else dashboard_metrics(template)
    for use in uses:
        if use.namespace != _namespace(template):
            assert use.namespace in {"AWS/SQS", "AWS/ECS", "ECS/ContainerInsights"}, use
            assert use.name not in EMF_METRICS, use


def test_emf_is_on_once_a_minute_in_the_namespace_parameter(template: dict[str, Any]) -> None:
    """The container writes EMF every 60 s into EmfNamespace, whose default is relay's."""
    environment = _environment(template)
    assert environment["RELAY_EMF_INTERVAL"] == "60"
    assert environment["RELAY_EMF_NAMESPACE"] == _namespace(template)
    default = _default(template, "EmfNamespace")
    expected = OPTIONS["--emf-namespace"].default
    assert default == expected
    if not is_cdk(template):
        assert re.fullmatch(template["Parameters"]["EmfNamespace"]["AllowedPattern"], default)


def test_alarms_are_the_ones_the_runbook_walks(template: dict[str, Any]) -> None:
    """The stack has exactly the five alarms deploy/README.md walks, each notifying the
    optional topic on ALARM and OK and choosing its missing-data rule (the construct's
    scenarios have no topic; tests/deploy/test_cdk.py checks the example's)."""
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert set(alarms) == ALARMS
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        if is_cdk(template):
            assert "AlarmActions" not in properties, name
            assert "OKActions" not in properties, name
        else:
            assert properties["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic", name
            assert properties["OKActions"]["Fn::If"][0] == "HasAlarmTopic", name
        assert properties["TreatMissingData"] in {"notBreaching", "breaching"}, name


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_metric_math_alarms_watch_one_expression_over_all_their_metrics(
    template: dict[str, Any], name: str
) -> None:
    """A metric-math alarm returns exactly one expression, uses every metric it fetches, stays
    within PutMetricAlarm's 10 metrics, and uses no SEARCH (alarms cannot)."""
    alarm = _alarm(template, name)
    if "Metrics" not in alarm:
        assert "MetricName" in alarm
        return
    queries = _queries(alarm)
    returned = [query for query in queries.values() if query.get("ReturnData", True)]
    assert len(returned) == 1
    assert "Expression" in returned[0]
    fetched = {key for key, query in queries.items() if "MetricStat" in query}
    assert len(fetched) <= ALARM_MAX_METRICS
    expressions = " ".join(
        query["Expression"] for query in queries.values() if "Expression" in query
    )
    assert "SEARCH" not in expressions
    used = set(re.findall(r"[a-z][a-z0-9_]*", expressions))
    expression_ids = {key for key, query in queries.items() if "Expression" in query}
    assert fetched | (expression_ids - {returned[0]["Id"]}) <= used
    periods = {query["MetricStat"]["Period"] for query in queries.values() if "MetricStat" in query}
    assert len(periods) == 1, "an alarm's metrics share one period"


def test_dead_letter_alarm_counts_every_dead_letter_reason_and_the_dlq_sends(
    template: dict[str, Any],
) -> None:
    """The dead-letter alarm sums relay's Messages for every dead-letter reason of DESIGN §4
    (conflict as its own outcome) and compares it with the copies the DLQ received."""
    alarm = _alarm(template, "DeadLetterAlarm")
    uses = [use for use in alarm_metrics(template) if use.where == "DeadLetterAlarm"]
    picked = {
        (use.dimensions["Outcome"][0], use.dimensions["Reason"][0])
        for use in _relay_uses(template, uses)
        if use.name == "Messages"
    }
    expected = {(Outcome.DEAD_LETTERED.value, reason.value) for reason in Reason}
    expected -= {(Outcome.DEAD_LETTERED.value, Reason.CONFLICT.value)}
    expected |= {(Outcome.CONFLICT.value, Reason.CONFLICT.value)}
    assert picked == expected
    sqs = [use for use in uses if use.namespace == "AWS/SQS"]
    assert [(use.name, use.dimensions["QueueName"]) for use in sqs] == [
        ("NumberOfMessagesSent", (DLQ_NAME,))
    ]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == stands_for(template, "DeadLetterAlarmThreshold", {})
    assert _default(template, "DeadLetterAlarmThreshold") == 0
    assert alarm["TreatMissingData"] == "notBreaching"


def test_no_alarm_watches_dlq_depth(template: dict[str, Any]) -> None:
    """No alarm reads the DLQ's depth: messages kept there for audit would hold it in ALARM and
    hide every later dead-letter."""
    for use in alarm_metrics(template):
        if use.dimensions.get("QueueName") == (DLQ_NAME,):
            assert not use.name.startswith("ApproximateNumberOfMessages"), use.where


def test_open_circuits_alarm_fires_on_one_open_circuit(template: dict[str, Any]) -> None:
    """Any task holding one circuit open raises the open-circuits alarm within a minute."""
    alarm = _alarm(template, "OpenCircuitsAlarm")
    assert (alarm["MetricName"], alarm["Statistic"]) == ("OpenCircuits", "Maximum")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["Period"] * alarm["EvaluationPeriods"] <= 120


def test_messages_stuck_alarm_sees_the_queue_and_relays_hands(template: dict[str, Any]) -> None:
    """The messages-stuck alarm takes the larger of SQS's oldest-message age and relay's
    OldestInFlightAge, and its default threshold is well inside relay's callback deadline."""
    alarm = _alarm(template, "MessagesStuckAlarm")
    queries = _queries(alarm)
    names = {
        query["MetricStat"]["Metric"]["MetricName"]: key
        for key, query in queries.items()
        if "MetricStat" in query
    }
    assert set(names) == {"ApproximateAgeOfOldestMessage", "OldestInFlightAge"}
    (returned,) = [q for q in queries.values() if q.get("ReturnData", True)]
    assert returned["Expression"].replace(" ", "") in {
        f"MAX([{names['ApproximateAgeOfOldestMessage']},{names['OldestInFlightAge']}])",
        f"MAX([{names['OldestInFlightAge']},{names['ApproximateAgeOfOldestMessage']}])",
    }
    assert alarm["Threshold"] == stands_for(template, "OldestMessageAlarmSeconds", {})
    default = _default(template, "OldestMessageAlarmSeconds")
    assert default < OPTIONS["--callback-deadline"].default / 2


def test_throttled_share_alarm_needs_a_share_held_for_several_periods(
    template: dict[str, Any],
) -> None:
    """The throttling alarm divides Throttles by CallbackAttempts (never by zero) and fires only
    when every one of at least three periods is above the percentage parameter."""
    alarm = _alarm(template, "ThrottledShareAlarm")
    queries = _queries(alarm)
    (returned,) = [q for q in queries.values() if q.get("ReturnData", True)]
    expression = returned["Expression"].replace(" ", "")
    assert expression.startswith("IF(attempts>0,")
    assert "/attempts" in expression
    assert queries["attempts"]["MetricStat"]["Metric"]["MetricName"] == "CallbackAttempts"
    assert queries["throttles"]["MetricStat"]["Metric"]["MetricName"] == "Throttles"
    assert alarm["EvaluationPeriods"] >= 3
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]
    assert alarm["Threshold"] == stands_for(template, "ThrottledShareAlarmPercent", {})
    if not is_cdk(template):
        parameter = template["Parameters"]["ThrottledShareAlarmPercent"]
        assert parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] == 100
    assert 1 <= _default(template, "ThrottledShareAlarmPercent") <= 100


def test_running_tasks_alarm_fires_below_the_minimum_and_on_silence(
    template: dict[str, Any],
) -> None:
    """The running-tasks alarm compares the service's RunningTaskCount with MinTasks, the same
    metric and dimensions the scaling policy divides by, and treats no data as too few."""
    alarm = _alarm(template, "RunningTasksAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == stands_for(template, "MinTasks", {})
    assert alarm["TreatMissingData"] == "breaching"
    (policy,) = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    configuration = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    (tasks,) = [
        m["MetricStat"]["Metric"]
        for m in configuration["CustomizedMetricSpecification"]["Metrics"]
        if "MetricStat" in m and m["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    ]
    assert alarm["Dimensions"] == tasks["Dimensions"]


def test_dashboard_shows_what_an_operator_reads(template: dict[str, Any]) -> None:
    """The dashboard graphs queue depth and age, outcomes, dead-letters by reason, both
    latencies at p50 and p99, send rate and throttles, open circuits, tasks, CPU and memory."""
    uses = dashboard_metrics(template)
    names = {use.name for use in uses}
    assert {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Messages",
        "CallbackLatency",
        "EndToEndLatency",
        "SendRate",
        "Throttles",
        "CallbackAttempts",
        "OpenCircuits",
        "OldestInFlightAge",
        "RunningTaskCount",
        "CPUUtilization",
        "MemoryUtilization",
    } <= names
    by_outcome = {
        use.dimensions["Outcome"]
        for use in _relay_uses(template, uses)
        if use.name == "Messages" and len(use.dimensions["Outcome"]) == 1
    }
    assert {values[0] for values in by_outcome} == {outcome.value for outcome in Outcome}
    body, _ = dashboard_body(template)
    stats: dict[str, set[str]] = {}
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], str) and isinstance(row[-1], dict) and "stat" in row[-1]:
                stats.setdefault(row[1], set()).add(row[-1]["stat"])
    assert {"p50", "p99"} <= stats["CallbackLatency"]
    assert {"p50", "p99"} <= stats["EndToEndLatency"]


def test_dashboard_body_is_json_with_known_substitutions(template: dict[str, Any]) -> None:
    """The dashboard body parses as JSON, and every `${Name}` in it is a Sub variable, a
    parameter or a pseudo parameter, so CloudFormation can substitute it."""
    properties = template["Resources"]["Dashboard"]["Properties"]
    body_text, variables = properties["DashboardBody"]["Fn::Sub"]
    body, _ = dashboard_body(template)
    assert body["widgets"]
    known = set(variables) | set(template.get("Parameters", {}))
    for name in re.findall(r"\$\{([^!}][^}]*)\}", body_text):
        assert name in known or name.startswith("AWS::"), name
    assert variables["QueueNameValue"] == SOURCE_QUEUE_NAME
    assert variables["DeadLetterQueueNameValue"] == DLQ_NAME


def test_readme_walks_every_alarm_and_lists_every_parameter(
    cfn_template: dict[str, Any],
) -> None:
    """deploy/README.md has a runbook entry for each alarm (with a relay or aws command to run)
    and a row for each parameter, so neither can be added without its documentation."""
    readme = README.read_text()
    runbook = readme.split("## 5. Runbook", 1)[1].split("\n## ", 1)[0]
    entries = dict(re.findall(r"\n### `(\w+)`[^\n]*\n(.*?)(?=\n### |\Z)", runbook, re.S))
    assert set(entries) == ALARMS
    for alarm, entry in entries.items():
        assert "**What it means.**" in entry, alarm
        assert re.search(r"^\s*(relay|aws) ", entry, re.M), alarm
    rows = set(re.findall(r"^\| `(\w+)` \|", readme, re.M))
    assert set(cfn_template["Parameters"]) <= rows
