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
"""The synth's own bound. It takes about 20 s (jsii's start, nine stacks, cdk-nag); a fresh
machine first unpacks the CDK's library for jsii, under a loaded CI more."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that may be the one to synthesize gets the synth's time on top of its own."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        uses_cdk = "cdk_synth" in getattr(item, "fixturenames", ()) or (
            callspec is not None and callspec.params.get("template") == "cdk"
        )
        if uses_cdk and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SYNTH_TIMEOUT_S + 60))


def _synthesize(outdir: Path) -> dict[str, Any]:
    environment = dict(os.environ)
    if CDK_NODE.exists():
        environment["JSII_NODE"] = str(CDK_NODE)
    done = subprocess.run(
        [sys.executable, "-m", "tests.deploy.cdk_synth", str(outdir)],
        cwd=ROOT,
        env=environment,
        # At a lower priority: the other workers' tests, some of them timing-minded, keep the
        # CPU they need while the synth (Node and Python, about 10 s of CPU) takes what is left.
        preexec_fn=lambda: os.nice(10),
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
