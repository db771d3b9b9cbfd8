"""Fixtures for the deploy checks: the templates (the hand-written one and the CDK construct's,
synthesized once per test session) and the Dockerfile."""

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    ROOT,
    Instruction,
    Synthesized,
    dockerfile_stages,
    load_template,
    normalize,
)

CDK_NODE = ROOT / "deploy" / "cdk" / "node_modules" / ".bin" / "node"
"""The Node jsii runs on (`make` installs it: the CDK's jsii supports Node 22 and 24)."""
SYNTH_TIMEOUT_S = 300


def _synthesize(outdir: Path) -> dict[str, Any]:
    environment = dict(os.environ)
    if CDK_NODE.exists():
        environment["JSII_NODE"] = str(CDK_NODE)
    done = subprocess.run(
        [sys.executable, "-m", "tests.deploy.cdk_synth", str(outdir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads((outdir / "synth.json").read_text())
    return result


@pytest.fixture(scope="session")
def cdk_synth(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    """The construct synthesized for every scenario, the example app, and cdk-nag's findings
    left unanswered (tests/deploy/cdk_synth.py). Once per session: the first worker to get
    here synthesizes under a file lock, the others read what it wrote."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by every xdist worker of this run
    outdir = root / "cdk-synth"
    with (root / "cdk-synth.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (outdir / "synth.json").exists():
            result: dict[str, Any] = json.loads((outdir / "synth.json").read_text())
            return result
        outdir.mkdir(exist_ok=True)
        return _synthesize(outdir)


@pytest.fixture(scope="module")
def cfn_template() -> dict[str, Any]:
    """deploy/cloudformation/relay.yaml as plain data."""
    return load_template()


@pytest.fixture(scope="module", params=["cloudformation", "cdk"])
def template(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each template the invariants hold for: deploy/cloudformation/relay.yaml as plain data,
    and the CDK construct's (`Synthesized`, its logical ids those of the hand-written one)."""
    if request.param == "cloudformation":
        return load_template()
    synth = request.getfixturevalue("cdk_synth")
    return Synthesized({key: normalize(scenario) for key, scenario in synth["scenarios"].items()})


@pytest.fixture(scope="module")
def final_stage() -> list[Instruction]:
    """The instructions of deploy/Dockerfile's last stage, the image that runs."""
    return dockerfile_stages()[-1]
