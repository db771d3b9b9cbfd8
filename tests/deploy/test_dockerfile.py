"""deploy/Dockerfile builds relay from the lock and runs it the way the template expects:
non-root, exec-form `relay run`, health through `relay healthcheck`."""

import json
from typing import Any

import pytest

from relay.config import RUN_OPTIONS
from tests.deploy.support import ROOT, Instruction, dockerfile_stages, dockerignored, resources

HTTP_PORT = next(spec.default for spec in RUN_OPTIONS if spec.flag == "--http-port")


def _args(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.args for instruction in stage if instruction.keyword == keyword]


def _copy_sources(instruction: Instruction) -> list[str]:
    words = [word for word in instruction.args.split() if not word.startswith("--")]
    return words[:-1]


def _relay_container(template: dict[str, Any]) -> dict[str, Any]:
    """relay's container in the task definition (beside it, with tracing, the collector's)."""
    (task,) = resources(template, "AWS::ECS::TaskDefinition").values()
    definitions = task["Properties"]["ContainerDefinitions"]
    (container,) = [c for c in definitions if c.get("Name") == "relay"]
    return dict(container)


def test_image_is_multi_stage_on_slim_python_311() -> None:
    """The image has a builder stage and a runtime stage, both on a slim Python 3.11 base."""
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        assert stage[0].args.split()[0].startswith("python:3.11-slim")


def test_final_stage_runs_as_a_non_root_user(
    final_stage: list[Instruction], template: dict[str, Any]
) -> None:
    """The running image's last USER is a fixed non-root UID, the one the task definition
    names."""
    users = _args(final_stage, "USER")
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    container = _relay_container(template)
    assert container["User"] == users[-1]


def test_entry_point_is_exec_form_relay_run(final_stage: list[Instruction]) -> None:
    """ENTRYPOINT and CMD are exec form and together run `relay run`, so SIGTERM reaches relay."""
    (entrypoint,) = [i for i in final_stage if i.keyword == "ENTRYPOINT"]
    commands = [i for i in final_stage if i.keyword == "CMD"]
    argv = entrypoint.exec_form()
    assert argv is not None
    for command in commands:
        cmd = command.exec_form()
        assert cmd is not None
        argv = argv + cmd
    assert argv == ["relay", "run"]


def test_builder_installs_runtime_dependencies_from_the_hashed_lock() -> None:
    """A build stage installs relay's dependencies with `pip install --require-hashes -r
    requirements/runtime.txt` (runtime and the otel extra, never the dev lock), then relay's own
    wheel without dependencies; every pip install checks hashes or installs no dependency; and
    the runtime stage only copies the built venv."""
    *builders, final = dockerfile_stages()
    commands = [
        command.strip()
        for stage in builders
        for run in _args(stage, "RUN")
        for command in run.split("&&")
        if "pip install" in command
    ]
    assert (
        "/opt/relay/bin/pip install --no-cache-dir --require-hashes -r requirements/runtime.txt"
        in (commands)
    )
    for command in commands:
        assert "--require-hashes -r requirements/" in command or "--no-deps" in command, command
        assert "dev.txt" not in command
        assert "[dev]" not in command
        assert " -c " not in command
    for copy in (i for i in final if i.keyword == "COPY"):
        assert copy.args.startswith("--from=")


def test_the_image_carries_an_sbom_of_its_own_venv() -> None:
    """The build writes a CycloneDX SBOM of /opt/relay (the venv the runtime stage copies) with
    a tool installed apart from it, from its own hashed lock."""
    *builders, _ = dockerfile_stages()
    runs = [run for stage in builders for run in _args(stage, "RUN")]
    (sbom,) = [run for run in runs if "cyclonedx-py" in run]
    assert "--require-hashes -r requirements/sbom.txt" in sbom
    assert "/opt/sbom/bin/pip install" in sbom
    tool = sbom.split("cyclonedx-py", 1)[1]
    assert "environment" in tool
    assert "-o /opt/relay/sbom.cdx.json" in tool
    assert tool.rstrip().endswith("/opt/relay/bin/python")


def test_the_base_image_says_how_to_pin_its_digest() -> None:
    """Both stages start from the same slim Python 3.11, and the Dockerfile says how to pin it
    by digest (the tag moves)."""
    text = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    bases = {stage[0].args.split()[0] for stage in dockerfile_stages()}
    assert bases == {"python:3.11-slim-bookworm"}
    assert "python:3.11-slim-bookworm@sha256:" in text
    assert "digest" in text


def test_tmp_is_a_volume_the_task_mounts(
    final_stage: list[Instruction], template: dict[str, Any]
) -> None:
    """/tmp is a VOLUME, so Fargate's bind mount there keeps the image's world-writable mode,
    and the task definition mounts a volume at exactly that path."""
    volumes = [path for args in _args(final_stage, "VOLUME") for path in json.loads(args)]
    assert volumes == ["/tmp"]
    container = _relay_container(template)
    assert [mount["ContainerPath"] for mount in container["MountPoints"]] == volumes


def test_final_stage_environment_and_health(final_stage: list[Instruction]) -> None:
    """The runtime writes no bytecode, logs unbuffered, exposes relay's HTTP port and checks its
    health with `relay healthcheck`."""
    env = " ".join(_args(final_stage, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert _args(final_stage, "EXPOSE") == [str(HTTP_PORT)]
    (healthcheck,) = _args(final_stage, "HEALTHCHECK")
    assert healthcheck.split(" CMD ", 1)[1] == '["relay", "healthcheck"]'


def test_copied_paths_exist_and_reach_the_build_context() -> None:
    """Every path the Dockerfile copies from the context exists and .dockerignore lets it in."""
    sources = [
        source
        for stage in dockerfile_stages()
        for instruction in stage
        if instruction.keyword == "COPY" and "--from=" not in instruction.args
        for source in _copy_sources(instruction)
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), source
    assert not dockerignored("relay/cli.py")


@pytest.mark.parametrize("path", [".git", ".venv", ".venv-checks", "tests", "relay/__pycache__"])
def test_dockerignore_keeps_the_rest_out(path: str) -> None:
    """Virtualenvs, git history, tests and bytecode stay out of the build context."""
    assert dockerignored(path)
