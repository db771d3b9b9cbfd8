"""Readers for deploy/: the CloudFormation template, the Dockerfile and .dockerignore."""

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "relay.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def load_template() -> dict[str, Any]:
    """The template as plain data, short tags (`!Ref`, `!GetAtt`, ...) in their long form."""
    decoded, problems = decode(str(TEMPLATE))
    assert not problems, [str(problem) for problem in problems]
    # A JSON round trip turns cfn-lint's node classes into plain dicts, lists and strings.
    return json.loads(json.dumps(decoded))


def resolve(template: Mapping[str, Any], value: Any, parameters: Mapping[str, Any]) -> Any:
    """Evaluates `Ref` to a parameter and `Fn::FindInMap`, given parameter values (defaults
    for the others); anything else comes back as it is."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
        name = value["Ref"]
        return parameters.get(name, template["Parameters"][name].get("Default"))
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        mapping, top, second = (
            resolve(template, part, parameters) for part in value["Fn::FindInMap"]
        )
        return template["Mappings"][mapping][str(top)][second]
    return value


def resources(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: `keyword` upper case, `args` with continuations joined."""

    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        try:
            parsed = json.loads(self.args)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages in order, each starting with its FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[Instruction]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(args.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last pattern that
    matches the path or one of its parents wins, `!` re-includes (Docker's rules)."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            ignored = not negated
    return ignored
