"""Readers for deploy/: the CloudFormation template, the Dockerfile and .dockerignore."""

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from relay.config.deployment import DeploymentSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "relay.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/relay:1.0.0"
TOPICS = "arn:aws:sns:eu-west-1:111122223333:step-results,arn:aws:sns:eu-west-1:444455556666:more"
ACCOUNTS = "111122223333,444455556666"
WORKFLOWS = (
    "arn:aws:transfer:eu-west-1:123456789012:workflow/w-0123456789abcdef0,"
    "arn:aws:transfer:eu-west-1:123456789012:workflow/w-abcdef0123456789a"
)
SCENARIOS: dict[str, dict[str, str]] = {
    "Defaults": {},
    "SnsTopics": {"SnsTopicArns": TOPICS},
    "ProducerAccounts": {"ProducerAccountIds": ACCOUNTS},
    "Workflows": {"WorkflowArns": WORKFLOWS},
    "DedupeTable": {"EnableDedupeTable": "true"},
    "WorkflowsAndTable": {"WorkflowArns": WORKFLOWS, "EnableDedupeTable": "true"},
    "Tracing": {"EnableTracing": "true"},
    "Edges": {"ShutdownGrace": "105", "MaxReceives": "100", "VisibilityTimeout": "30"},
}
"""The template's parameter values the shared tests deploy with; the construct is synthesized
once per scenario (tests/deploy/cdk_synth.py), with the settings that stand for them."""
SETTINGS_OF = {
    "ShutdownGrace": "shutdown_grace_s",
    "MaxReceives": "max_receives",
    "VisibilityTimeout": "visibility_timeout_s",
    "EmfNamespace": "emf_namespace",
    "MinTasks": "min_tasks",
    "DeadLetterAlarmThreshold": "dead_letter_alarm_threshold",
    "OldestMessageAlarmSeconds": "oldest_message_alarm_s",
    "ThrottledShareAlarmPercent": "throttled_share_alarm_percent",
    "TracingSampleRatio": "tracing_sample_ratio",
    "EnableDedupeTable": "dedupe_table",
    "EnableTracing": "tracing",
    "WorkflowArns": "workflow_arns",
    "SnsTopicArns": "sns_topic_arns",
    "ProducerAccountIds": "producer_account_ids",
}
"""The template's parameters → the construct's DeploymentSettings fields of the same meaning."""


def scenario_key(parameters: Mapping[str, Any]) -> str:
    """A scenario's key: its parameter values, in a canonical form."""
    return json.dumps({name: str(value) for name, value in parameters.items()}, sort_keys=True)


def settings_for(parameters: Mapping[str, str]) -> DeploymentSettings:
    """The construct's settings that stand for the template's parameter values."""
    values: dict[str, Any] = {}
    for name, value in parameters.items():
        field = SETTINGS_OF[name]
        default = getattr(DeploymentSettings(), field)
        if isinstance(default, tuple):
            values[field] = tuple(value.split(","))
        elif isinstance(default, bool):
            values[field] = value == "true"
        else:
            values[field] = type(default)(value)
    return DeploymentSettings(**values)


class Synthesized(dict[str, Any]):
    """The construct's template with the defaults, normalized (`normalize`), and its template
    for each scenario (`with_conditions` picks it)."""

    def __init__(self, scenarios: Mapping[str, dict[str, Any]]) -> None:
        super().__init__(scenarios[scenario_key({})])
        self.scenarios = dict(scenarios)


def is_cdk(template: Mapping[str, Any]) -> bool:
    """Whether the template is the construct's synthesized one."""
    return isinstance(template, Synthesized)


def stands_for(template: Mapping[str, Any], name: str, parameters: Mapping[str, Any]) -> Any:
    """What a resource holds for the template's parameter `name`: a `Ref` to it in the
    hand-written template; the value itself in the construct's (its setting's default unless
    `parameters` give it)."""
    if not is_cdk(template):
        return {"Ref": name}
    value = getattr(settings_for(parameters), SETTINGS_OF[name])
    return list(value) if isinstance(value, tuple) else value


def normalize(template: dict[str, Any]) -> dict[str, Any]:
    """The construct's template with the hand-written one's logical ids: a resource at
    `<stack>/Relay/TaskRole/Resource` becomes `TaskRole` (`.../Service/Service`, `Service`),
    and every Ref, GetAtt and DependsOn follows (a resource without a path, like CDK's
    metadata, is dropped)."""
    renamed = {}
    resources = {}
    for logical_id, resource in template["Resources"].items():
        path = resource.get("Metadata", {}).get("aws:cdk:path", "")
        parts = path.split("/")[2:]
        if not parts:
            continue
        if parts[-1] == "Resource":
            parts = parts[:-1]
        if len(parts) > 1 and parts[-1] == parts[-2]:  # an L2's own: Service/Service
            parts = parts[:-1]
        renamed[logical_id] = "".join(parts)
        resources[renamed[logical_id]] = resource

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in renamed:
                return {"Ref": renamed[value["Ref"]]}
            if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in renamed:
                return {"Fn::GetAtt": [renamed[value["Fn::GetAtt"][0]], value["Fn::GetAtt"][1]]}
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return renamed.get(value, value) if isinstance(value, str) else value

    normalized = {key: value for key, value in template.items() if key != "Resources"}
    normalized["Resources"] = resources
    result: dict[str, Any] = walk(normalized)
    return result


def load_template() -> dict[str, Any]:
    """The template as plain data, short tags (`!Ref`, `!GetAtt`, ...) in their long form."""
    decoded, problems = decode(str(TEMPLATE))
    assert not problems, [str(problem) for problem in problems]
    # A JSON round trip turns cfn-lint's node classes into plain dicts, lists and strings.
    return json.loads(json.dumps(decoded))


def resolve(template: Mapping[str, Any], value: Any, parameters: Mapping[str, Any]) -> Any:
    """Evaluates `Ref` to a parameter and `Fn::FindInMap`, given parameter values (defaults
    for the others); anything else comes back as it is."""
    if isinstance(template, Synthesized):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
        name = value["Ref"]
        return parameters.get(name, template["Parameters"][name].get("Default"))
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        mapping, top, second = (
            resolve(template, part, parameters) for part in value["Fn::FindInMap"]
        )
        return template["Mappings"][mapping][str(top)][second]
    return value


NO_VALUE = {"Ref": "AWS::NoValue"}


def parameter_value(template: Mapping[str, Any], name: str, parameters: Mapping[str, Any]) -> Any:
    """A parameter's value as CloudFormation sees it: the one given, else its default; a
    CommaDelimitedList comes as a list (an empty one as `[""]`, as CloudFormation splits it)."""
    spec = template["Parameters"][name]
    value = parameters.get(name, spec.get("Default"))
    if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
        return value.split(",")
    return value


def _condition_operand(
    template: Mapping[str, Any], value: Any, parameters: Mapping[str, Any]
) -> Any:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return parameter_value(template, value["Ref"], parameters)
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, items = value["Fn::Join"]
        items = _condition_operand(template, items, parameters)
        return separator.join(str(_condition_operand(template, item, parameters)) for item in items)
    return value


def condition(template: Mapping[str, Any], name: str, parameters: Mapping[str, Any]) -> bool:
    """Evaluates one of the template's Conditions for these parameter values (defaults for the
    rest): Fn::Equals over Ref and Fn::Join, Fn::Not, Fn::And, Fn::Or, Condition."""

    def evaluate(expression: Any) -> bool:
        ((function, arguments),) = expression.items()
        if function == "Fn::Equals":
            left, right = (_condition_operand(template, side, parameters) for side in arguments)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not evaluate(arguments[0])
        if function == "Fn::And":
            return all(evaluate(argument) for argument in arguments)
        if function == "Fn::Or":
            return any(evaluate(argument) for argument in arguments)
        if function == "Condition":
            return condition(template, arguments, parameters)
        raise AssertionError(f"condition function the reader does not know: {function}")

    return evaluate(template["Conditions"][name])


def with_conditions(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation deploys it with these parameter values: every Fn::If
    resolved, AWS::NoValue dropped, resources and outputs whose condition is false left out.
    Refs to parameters stay as they are (see `resolve`). The construct's: the stack it
    synthesized for these values (SCENARIOS)."""
    if isinstance(template, Synthesized):
        key = scenario_key(parameters)
        assert key in template.scenarios, f"no CDK scenario for {key}: add it to SCENARIOS"
        return template.scenarios[key]

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, when_true, when_false = value["Fn::If"]
                return walk(when_true if condition(template, name, parameters) else when_false)
            walked = {key: walk(item) for key, item in value.items()}
            return {key: item for key, item in walked.items() if item != NO_VALUE}
        if isinstance(value, list):
            return [item for item in (walk(element) for element in value) if item != NO_VALUE]
        return value

    deployed: dict[str, Any] = walk(template)
    for section in ("Resources", "Outputs"):
        deployed[section] = {
            name: entry
            for name, entry in deployed[section].items()
            if "Condition" not in entry or condition(template, entry["Condition"], parameters)
        }
    return deployed


def resources(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


@dataclass(frozen=True)
class MetricUse:
    """One metric an alarm or the dashboard reads. Namespace and dimension values are template
    values (`{"Ref": "EmfNamespace"}`, `{"Fn::GetAtt": ["Queue", "QueueName"]}`, a string);
    each dimension maps to the values the use selects (empty: any value, a SEARCH)."""

    where: str
    namespace: Any
    name: str
    dimensions: dict[str, tuple[Any, ...]]


def alarm_metrics(template: Mapping[str, Any]) -> list[MetricUse]:
    """Every metric the template's alarms read, plain alarms and metric-math alarms alike."""
    uses = []
    for name, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        queries = properties.get("Metrics", [])
        metrics = [query["MetricStat"]["Metric"] for query in queries if "MetricStat" in query]
        if "MetricName" in properties:
            metrics = [properties]
        for metric in metrics:
            dimensions = {d["Name"]: (d["Value"],) for d in metric.get("Dimensions", [])}
            uses.append(MetricUse(name, metric["Namespace"], metric["MetricName"], dimensions))
    return uses


# SEARCH('{Namespace,Dimension,...} terms', 'Statistic'): the schema names the exact dimension
# set; the terms pick the metric name and dimension values (Name="value"). The namespace may be
# a `${Name}` placeholder, braces and all.
_SEARCH = re.compile(r"SEARCH\('\{(?P<schema>(?:\$\{[^}]*\}|[^}])*)\}(?P<terms>[^']*)'")
_TERM = re.compile(r'(?P<name>[A-Za-z]+)="(?P<value>[^"]*)"')


def dashboard_body(template: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's body as data, and its Fn::Sub variables. Number parameters written
    bare (`${MinTasks}`) take their defaults; every other `${Name}` stays in its string."""
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    parameters = template.get("Parameters", {})

    def number(match: re.Match[str]) -> str:
        name = match["name"]
        if name in parameters and parameters[name]["Type"] == "Number":
            return str(parameters[name]["Default"])
        return match[0]

    return json.loads(re.sub(r"\$\{(?P<name>[A-Za-z0-9:]+)\}", number, body)), variables


def _sub_value(text: str, variables: Mapping[str, Any]) -> Any:
    """`${Name}` as the template value it stands for; any other text as it is."""
    match = re.fullmatch(r"\$\{(?P<name>[A-Za-z0-9:]+)\}", text)
    if match is None:
        return text
    return variables.get(match["name"], {"Ref": match["name"]})


def dashboard_metrics(template: Mapping[str, Any]) -> list[MetricUse]:
    """Every metric the dashboard's graphs read: metric rows and the SEARCH expressions."""
    body, variables = dashboard_body(template)
    uses = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        where = f"dashboard: {widget['properties']['title']}"
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                for search in _SEARCH.finditer(row[0]["expression"]):
                    namespace, *names = (p.strip().strip('"') for p in search["schema"].split(","))
                    picked: dict[str, list[Any]] = {name: [] for name in names}
                    metric_name = ""
                    for term in _TERM.finditer(search["terms"]):
                        value = _sub_value(term["value"], variables)
                        if term["name"] == "MetricName":
                            metric_name = value
                        else:
                            picked.setdefault(term["name"], []).append(value)
                    dimensions = {name: tuple(values) for name, values in picked.items()}
                    namespace_value = _sub_value(namespace, variables)
                    uses.append(MetricUse(where, namespace_value, metric_name, dimensions))
                continue
            fields = [field for field in row if isinstance(field, str)]
            assert "." not in fields, f"{where}: write each metric row out in full"
            namespace, metric_name, *pairs = fields
            dimensions = {
                name: (_sub_value(value, variables),)
                for name, value in zip(pairs[::2], pairs[1::2], strict=True)
            }
            uses.append(MetricUse(where, _sub_value(namespace, variables), metric_name, dimensions))
    return uses


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: `keyword` upper case, `args` with continuations joined."""

    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        try:
            parsed = json.loads(self.args)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages in order, each starting with its FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[Instruction]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(args.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last pattern that
    matches the path or one of its parents wins, `!` re-includes (Docker's rules)."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            ignored = not negated
    return ignored
