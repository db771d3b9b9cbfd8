"""The README and the code describe the same service: options, reasons, outcomes, errors."""

import re
import tomllib
from pathlib import Path

import pytest

import relay
from relay.config import RUN_OPTIONS
from relay.observability import Metrics
from relay.outcomes import CLASSIFICATION, Outcome, Reason

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _table_rows(heading: str) -> list[list[str]]:
    """The rows of the first table after a heading, as lists of cell texts."""
    section = README.split(heading, 1)[1]
    rows = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= {"-", ":"}:
                rows.append(cells)
        elif started:
            break
    return rows[1:]


@pytest.mark.parametrize("spec", RUN_OPTIONS, ids=lambda s: s.flag)
def test_every_run_option_is_in_the_configuration_table(spec: object) -> None:
    """Each `relay run` option appears in the README with its variable and default."""
    rows = {row[0].strip("`"): row for row in _table_rows("### Configuration")}
    flag = spec.flag  # type: ignore[attr-defined]
    assert flag in rows, f"{flag} missing from the README's configuration table"
    row = rows[flag]
    assert row[1].strip("`") == spec.env  # type: ignore[attr-defined]
    default = spec.default  # type: ignore[attr-defined]
    documented = row[2].strip("`")
    if isinstance(default, float):
        assert float(documented) == default
    else:
        assert documented == str(default)


def test_the_configuration_table_has_no_option_the_code_lacks() -> None:
    """Every option the README documents exists in `relay run`."""
    flags = {spec.flag for spec in RUN_OPTIONS}
    documented = {row[0].strip("`") for row in _table_rows("### Configuration")}
    assert documented <= flags


def test_every_dead_letter_reason_is_explained() -> None:
    """The reasons table lists exactly DESIGN's reasons except conflict, which the outcomes
    table explains."""
    documented = {row[0].strip("`") for row in _table_rows("### Dead-letter reasons")}
    assert documented == {r.value for r in Reason} - {Reason.CONFLICT.value}


def test_every_outcome_is_in_the_outcome_table() -> None:
    """The outcome table lists every outcome word the code uses."""
    documented = {row[0].strip("`") for row in _table_rows("### Outcomes")}
    assert documented == {o.value for o in Outcome}


def test_every_classified_error_code_is_named_in_the_readme() -> None:
    """Each error code of the classification table is named where the README explains it."""
    for code in CLASSIFICATION:
        assert code in README, code


def test_every_metric_is_documented() -> None:
    """Each metric the worker exports appears in the README's metrics table."""
    names = set()
    for metric in Metrics().registry.collect():
        suffix = "_total" if metric.type == "counter" else ""
        names.add(metric.name + suffix)
    documented = set(re.findall(r"`(relay_[a-z_]+)", README))
    missing = names - documented
    assert not missing, f"undocumented metrics: {sorted(missing)}"


def test_the_distribution_name_is_pyprojects_and_the_readme_installs_it() -> None:
    """relay.DISTRIBUTION (read by `relay --version`) is pyproject's name, which is not PyPI's
    unrelated `relay`, and the README's install line names it."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == relay.DISTRIBUTION
    assert relay.DISTRIBUTION != "relay"
    assert pyproject["project"]["scripts"]["relay"] == "relay.cli:main"
    assert f"pip install {relay.DISTRIBUTION}" in README


def test_the_version_is_written_once_and_the_changelog_knows_it() -> None:
    """relay.__version__ (the User-Agent's `relay/<version>`, `relay --version`) is pyproject's
    version as installed, written nowhere else in relay/, and CHANGELOG.md has its heading and
    the policy that says what a major, minor and patch release may change."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version = pyproject["project"]["version"]
    assert relay.__version__ == version
    for path in (ROOT / "relay").rglob("*.py"):
        assert f'"{version}"' not in path.read_text(encoding="utf-8"), path
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    policy = changelog.split("## Versions", 1)[1].split("\n## [", 1)[0]
    for word in ("**major**", "**minor**", "**patch**", "relay-reason", "message contract"):
        assert word in policy, word
