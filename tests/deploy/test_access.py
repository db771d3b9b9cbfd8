"""Who may reach relay's queue and what relay may answer, for the values the parameters allow:
SNS topics by exact ARN, other accounts' producers for SendMessage only, the workflows named
(all of the account's only when none are), both roles assumable only by this account's ECS
tasks, and the log group kept like the queues."""

import re
from typing import Any

from tests.deploy.support import (
    ACCOUNTS,
    TOPICS,
    WORKFLOWS,
    parameter_value,
    stands_for,
    with_conditions,
)

QUEUE_ARN = {"Fn::GetAtt": ["Queue", "Arn"]}
DLQ_ARN = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
ALL_WORKFLOWS = {
    "Fn::Sub": "arn:${AWS::Partition}:transfer:${AWS::Region}:${AWS::AccountId}:workflow/*"
}


def _queue_statements(template: dict[str, Any], parameters: dict[str, Any]) -> list[Any]:
    deployed = with_conditions(template, parameters)
    policy = deployed["Resources"]["QueuesPolicy"]["Properties"]
    return list(policy["PolicyDocument"]["Statement"])


def _allows(statements: list[Any]) -> list[dict[str, Any]]:
    return [statement for statement in statements if statement["Effect"] == "Allow"]


def _callback_resource(template: dict[str, Any], parameters: dict[str, Any]) -> Any:
    role = with_conditions(template, parameters)["Resources"]["TaskRole"]["Properties"]
    (statement,) = [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "transfer:SendWorkflowStepState"
    ]
    return statement["Resource"]


def test_queue_policy_lets_sns_send_from_exactly_the_topics_named(
    template: dict[str, Any],
) -> None:
    """With SnsTopicArns set, SNS may SendMessage to the queue only when aws:SourceArn is one
    of those topics, and to nothing else."""
    chosen = {"SnsTopicArns": TOPICS}
    (statement,) = _allows(_queue_statements(template, chosen))
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == QUEUE_ARN
    topics = stands_for(template, "SnsTopicArns", chosen)
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topics}}
    if "Parameters" in template:
        assert parameter_value(template, "SnsTopicArns", chosen) == TOPICS.split(",")
    else:
        assert topics == TOPICS.split(",")


def test_queue_policy_allows_nobody_by_default(template: dict[str, Any]) -> None:
    """With the defaults, the queue policy only denies plain HTTP: no topic or other account
    may send."""
    statements = _queue_statements(template, {})
    assert _allows(statements) == []
    (deny,) = statements
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queue_policy_lets_other_accounts_only_publish(template: dict[str, Any]) -> None:
    """With ProducerAccountIds set, those accounts may SendMessage to the queue, and nothing
    else on it nor anything on the DLQ."""
    chosen = {"ProducerAccountIds": ACCOUNTS}
    (statement,) = _allows(_queue_statements(template, chosen))
    assert statement["Principal"] == {"AWS": stands_for(template, "ProducerAccountIds", chosen)}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == QUEUE_ARN
    assert "Condition" not in statement


def test_fan_in_parameters_accept_only_well_formed_values(cfn_template: dict[str, Any]) -> None:
    """Each topic must be an SNS ARN and each account a 12-digit id (CloudFormation checks the
    pattern per list item), and both default to none."""
    parameters = cfn_template["Parameters"]
    for name, good, bad in [
        ("SnsTopicArns", TOPICS.split(",")[0], "arn:aws:sqs:eu-west-1:111122223333:q"),
        ("ProducerAccountIds", "111122223333", "1111-2222-3333"),
        ("WorkflowArns", WORKFLOWS.split(",")[0], "w-0123456789abcdef0"),
    ]:
        spec = parameters[name]
        assert spec["Type"] == "CommaDelimitedList"
        assert spec["Default"] == ""
        assert re.fullmatch(spec["AllowedPattern"], good), name
        assert re.fullmatch(spec["AllowedPattern"], "")
        assert not re.fullmatch(spec["AllowedPattern"], bad), name


def test_callbacks_are_allowed_on_the_workflows_named(template: dict[str, Any]) -> None:
    """With WorkflowArns set, the task role may call SendWorkflowStepState on those workflows
    only; left empty, on every workflow of the account in the stack's region."""
    chosen = {"WorkflowArns": WORKFLOWS}
    named = _callback_resource(template, chosen)
    assert named == stands_for(template, "WorkflowArns", chosen)
    assert named in ({"Ref": "WorkflowArns"}, WORKFLOWS.split(","))
    assert _callback_resource(template, {}) in (ALL_WORKFLOWS, [ALL_WORKFLOWS])


def test_execution_role_trusts_only_this_accounts_ecs_tasks(template: dict[str, Any]) -> None:
    """The execution role's trust policy carries the same aws:SourceAccount and aws:SourceArn
    conditions as the task role's, so no other account's ECS can assume it."""
    trusts = {}
    for role in ("TaskRole", "ExecutionRole"):
        document = template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]
        (statement,) = document["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        trusts[role] = statement["Condition"]
    assert trusts["ExecutionRole"] == trusts["TaskRole"]
    assert trusts["TaskRole"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = trusts["TaskRole"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn == "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*"


def test_log_group_is_kept_like_the_queues(template: dict[str, Any]) -> None:
    """Deleting the stack or replacing the log group keeps relay's log lines, as the queues are
    kept; only a first create that rolls back removes it."""
    resources = template["Resources"]
    for queue in ("Queue", "DeadLetterQueue"):
        assert resources[queue]["DeletionPolicy"] == "Retain"
        assert resources[queue]["UpdateReplacePolicy"] == "Retain"
    log_group = resources["LogGroup"]
    assert log_group["DeletionPolicy"] == "RetainExceptOnCreate"
    assert log_group["UpdateReplacePolicy"] == "Retain"
    assert "RetentionInDays" in log_group["Properties"]


def _operator_statements(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    deployed = with_conditions(template, parameters)
    policy = deployed["Resources"]["DlqOperatorPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    return {statement["Sid"]: statement for statement in statements}


def test_the_dlq_operator_policy_allows_exactly_what_the_dlq_tools_need(
    template: dict[str, Any],
) -> None:
    """The operator policy: reading, deleting and finding the sources of the DLQ, sending to
    the queue, and ListExecutions and DescribeExecution on the callback's workflows; nothing
    else, not the callback; and it is an output an operator role can attach."""
    chosen = {"WorkflowArns": WORKFLOWS}
    for parameters, workflows in ((chosen, stands_for(template, "WorkflowArns", chosen)),
                                  ({}, ALL_WORKFLOWS)):  # fmt: skip
        statements = _operator_statements(template, parameters)
        actions = {sid: sorted(statement["Action"]) for sid, statement in statements.items()}
        assert actions == {
            "DeadLetters": [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ListDeadLetterSourceQueues",
                "sqs:ReceiveMessage",
            ],
            "ReplayOntoTheQueue": ["sqs:GetQueueAttributes", "sqs:SendMessage"],
            "ReadExecutions": ["transfer:DescribeExecution", "transfer:ListExecutions"],
        }
        assert statements["DeadLetters"]["Resource"] == DLQ_ARN
        assert statements["ReplayOntoTheQueue"]["Resource"] == QUEUE_ARN
        assert statements["ReadExecutions"]["Resource"] in (workflows, [workflows])
        assert statements["ReadExecutions"]["Resource"] == _callback_resource(template, parameters)
    output = template["Outputs"]["DlqOperatorPolicyArn"]
    assert output["Value"] == {"Ref": "DlqOperatorPolicy"}
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-DlqOperatorPolicyArn"}


def test_the_task_role_cannot_read_executions_nor_has_the_operator_policy(
    template: dict[str, Any],
) -> None:
    """`relay run` needs no execution read: its task role gets neither ListExecutions nor
    DescribeExecution, and neither the operator policy nor any managed policy of the stack."""
    for parameters in ({}, {"WorkflowArns": WORKFLOWS, "EnableDedupeTable": "true"}):
        role = with_conditions(template, parameters)["Resources"]["TaskRole"]["Properties"]
        actions = [
            action
            for policy in role["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
            for action in (
                [statement["Action"]]
                if isinstance(statement["Action"], str)
                else statement["Action"]
            )
        ]
        assert not [
            a
            for a in actions
            if a.startswith("transfer:") and a != "transfer:SendWorkflowStepState"
        ]
        assert "ManagedPolicyArns" not in role
