"""A CDK app that deploys relay with `TransferFamilyRelay`: copy it, put in your VPC, subnets,
image and workflows, and run `cdk deploy` (deploy/README.md, "Deploying with the AWS CDK").

    pip install 'transfer-family-relay[cdk]'
    cdk synth --app 'python examples/cdk_app.py'

It needs no AWS account to synthesize: the stack is environment-agnostic, the VPC is named by
its attributes (no lookup) and the synthesizer needs no bootstrap stack. The tests synthesize
it (tests/deploy/cdk_synth.py) and run cdk-nag's AwsSolutions checks on it.
"""

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sns as sns

from relay.cdk import DeploymentSettings, TransferFamilyRelay

# Yours: the image you pushed (a tag or digest, never "latest"), your VPC's private subnets
# (a NAT gateway or VPC endpoints for SQS, Transfer Family, ECR, S3, CloudWatch Logs), the
# workflows relay may answer.
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/relay:1.0.0"
VPC_ID = "vpc-0123456789abcdef0"
AVAILABILITY_ZONES = ["eu-west-1a", "eu-west-1b"]
PRIVATE_SUBNETS = ["subnet-0aaa1111", "subnet-0bbb2222"]
WORKFLOWS = ("arn:aws:transfer:eu-west-1:123456789012:workflow/w-0123456789abcdef0",)


class RelayStack(cdk.Stack):
    """relay, its queues and alarms, with a topic for the alarms and the fleet's dedupe table."""

    def __init__(self, scope: cdk.App, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=VPC_ID,
            availability_zones=AVAILABILITY_ZONES,
            private_subnet_ids=PRIVATE_SUBNETS,
        )
        alarms = sns.Topic(self, "Alarms", enforce_ssl=True)
        relay = TransferFamilyRelay(
            self,
            "Relay",
            image=ecs.ContainerImage.from_registry(IMAGE),
            vpc=vpc,
            alarm_topic=alarms,
            settings=DeploymentSettings(max_tasks=4, dedupe_table=True, workflow_arns=WORKFLOWS),
        )
        relay.add_outputs()


def build_app(**app_options: Any) -> cdk.App:
    """The app with relay's stack (`app_options` go to `cdk.App`: outdir, context)."""
    app = cdk.App(**app_options)
    # BootstraplessSynthesizer: no bootstrap stack, no asset bucket (relay's image comes from
    # your registry). Drop it to use your account's bootstrap.
    RelayStack(app, "relay", synthesizer=cdk.BootstraplessSynthesizer())
    return app


if __name__ == "__main__":
    build_app().synth()
