"""Synthesizes relay's CDK construct for the deploy tests, in a process of its own (jsii runs a
Node process beside Python; the tests' workers never load it): one stack per scenario, each
checked by cdk-nag's AwsSolutions pack, and the example app (examples/cdk_app.py).

    python -m tests.deploy.cdk_synth OUTDIR

writes OUTDIR/synth.json: {"scenarios": {key: template}, "example": template, "nag": [finding]}
(a finding is an error or warning cdk-nag reported and no suppression answered). No AWS
account: the stacks are environment-agnostic and use a synthesizer that needs no bootstrap.
"""

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from cdk_nag import AwsSolutionsChecks

from relay.cdk import TransferFamilyRelay
from tests.deploy.support import IMAGE, SCENARIOS, scenario_key, settings_for


def _stack(app: cdk.App, name: str, parameters: dict[str, str]) -> cdk.Stack:
    stack = cdk.Stack(app, f"Relay{name}", synthesizer=cdk.BootstraplessSynthesizer())
    vpc = ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0123456789abcdef0",
        availability_zones=["eu-west-1a", "eu-west-1b"],
        private_subnet_ids=["subnet-0aaa1111", "subnet-0bbb2222"],
    )
    relay = TransferFamilyRelay(
        stack,
        "Relay",
        image=ecs.ContainerImage.from_registry(IMAGE),
        vpc=vpc,
        settings=settings_for(parameters),
    )
    relay.add_outputs()
    return stack


def _synth(app: cdk.App, outdir: Path) -> list[dict[str, Any]]:
    """Synthesizes `app` into `outdir`; cdk-nag's findings left unanswered, from its report
    (a finding that is an error also fails the synth, after the templates are written)."""
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
    report = outdir / "validation-report.json"
    if not report.exists():
        return []
    findings = []
    for plugin in json.loads(report.read_text())["pluginReports"]:
        for violation in plugin["violations"]:
            for where in violation["violatingConstructs"]:
                findings.append({"rule": violation["ruleName"], "severity": violation["severity"],
                                 "path": where["constructPath"]})  # fmt: skip
    return findings


def _template(outdir: Path, stack: str) -> Any:
    return json.loads((outdir / f"{stack}.template.json").read_text())


def main(outdir: Path) -> None:
    """Synthesizes every scenario and the example app into `outdir`."""
    context = {"aws:cdk:enable-path-metadata": True}
    scenarios = outdir / "scenarios"
    app = cdk.App(outdir=str(scenarios), context=context)
    for name, parameters in SCENARIOS.items():
        _stack(app, name, parameters)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    findings = _synth(app, scenarios)

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import cdk_app  # the example, as a user runs it

    example = outdir / "example"
    example_app = cdk_app.build_app(outdir=str(example), context=context)
    cdk.Validations.of(example_app).add_plugins(AwsSolutionsChecks(example_app))
    findings += _synth(example_app, example)

    result = {
        "scenarios": {
            scenario_key(parameters): _template(scenarios, f"Relay{name}")
            for name, parameters in SCENARIOS.items()
        },
        "example": _template(example, "relay"),
        "nag": findings,
    }
    (outdir / "synth.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
