"""relay on ECS Fargate as an AWS CDK construct: `TransferFamilyRelay` builds what
deploy/cloudformation/relay.yaml builds, with relay's defaults (`DeploymentSettings`).

Installed with the `cdk` extra (`pip install 'transfer-family-relay[cdk]'`); nothing else in
relay imports it. deploy/README.md, "Deploying with the AWS CDK", shows it in an app.
"""

from relay.cdk.construct import TransferFamilyRelay
from relay.config.deployment import DeploymentSettings

__all__ = ["DeploymentSettings", "TransferFamilyRelay"]
