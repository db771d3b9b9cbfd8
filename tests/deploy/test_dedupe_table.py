"""The optional shared delivered-memory of DESIGN §10: off by default; when on, a DynamoDB table
keyed `pk` with TTL on `expires_at`, billed per request and encrypted at rest, that only the
task role may read and write, item by item, and that the container is told to use."""

from typing import Any

import pytest

from relay.dedupe import KEY, TTL_ATTRIBUTE
from tests.deploy.support import is_cdk, resources, stands_for, with_conditions

ON = {"EnableDedupeTable": "true"}
TABLE_ARN = {"Fn::GetAtt": ["DedupeTable", "Arn"]}


def _environment(deployed: dict[str, Any]) -> dict[str, Any]:
    (task,) = resources(deployed, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    return {item["Name"]: item["Value"] for item in container["Environment"]}


def _task_role_statements(deployed: dict[str, Any]) -> list[dict[str, Any]]:
    role = deployed["Resources"]["TaskRole"]["Properties"]
    return [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_table_is_off_by_default(template: dict[str, Any]) -> None:
    """With the defaults there is no table, no DynamoDB permission and no RELAY_DEDUPE_TABLE."""
    assert stands_for(template, "EnableDedupeTable", {}) in ({"Ref": "EnableDedupeTable"}, False)
    if not is_cdk(template):
        assert template["Parameters"]["EnableDedupeTable"]["Default"] == "false"
    deployed = with_conditions(template, {})
    assert resources(deployed, "AWS::DynamoDB::Table") == {}
    for statement in _task_role_statements(deployed):
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert not any(action.startswith("dynamodb:") for action in actions)
    assert "RELAY_DEDUPE_TABLE" not in _environment(deployed)
    assert "DedupeTableName" not in deployed["Outputs"]


def test_table_has_the_key_ttl_billing_and_encryption_relay_expects(
    template: dict[str, Any],
) -> None:
    """When on, the table's partition key is the string `pk`, its TTL attribute `expires_at`,
    it is billed per request and encrypted at rest with KMS."""
    (table,) = resources(with_conditions(template, ON), "AWS::DynamoDB::Table").values()
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": KEY, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": KEY, "AttributeType": "S"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in properties
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_task_role_gets_three_item_actions_on_that_table_only(template: dict[str, Any]) -> None:
    """When on, the task role may GetItem, PutItem and UpdateItem on the stack's table, and no
    other DynamoDB action on anything."""
    statements = _task_role_statements(with_conditions(template, ON))
    dynamodb = [
        statement
        for statement in statements
        if any(str(action).startswith("dynamodb:") for action in statement["Action"])
    ]
    (statement,) = dynamodb
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert statement["Resource"] == TABLE_ARN
    assert not {"NotAction", "NotResource", "Condition"} & set(statement)


@pytest.mark.parametrize(("parameters", "told"), [({}, False), (ON, True)])
def test_container_is_told_the_table_only_when_there_is_one(
    template: dict[str, Any], parameters: dict[str, Any], told: bool
) -> None:
    """RELAY_DEDUPE_TABLE names the stack's table when the table is on, and is absent when off
    (relay then keeps its per-process memory)."""
    environment = _environment(with_conditions(template, parameters))
    if told:
        assert environment["RELAY_DEDUPE_TABLE"] == {"Ref": "DedupeTable"}
    else:
        assert "RELAY_DEDUPE_TABLE" not in environment


def test_skipped_checks_on_the_table_say_why(cfn_template: dict[str, Any]) -> None:
    """Each checkov finding skipped on the table carries its reason in the template."""
    skips = cfn_template["Resources"]["DedupeTable"]["Metadata"]["checkov"]["skip"]
    assert {skip["id"] for skip in skips} == {"CKV_AWS_28", "CKV_AWS_119"}
    for skip in skips:
        assert len(skip["comment"]) > 40, skip["id"]
