"""relay: SQS step results in, AWS Transfer Family SendWorkflowStepState callbacks out."""

from importlib.metadata import PackageNotFoundError, version
from typing import Final

DISTRIBUTION: Final = "transfer-family-relay"
"""The name relay is installed under (pyproject's `name`; `relay` on PyPI is another project)."""

try:
    __version__: str = version(DISTRIBUTION)
    """relay's version, written once: pyproject's `version` (CHANGELOG.md, "Versions")."""
except PackageNotFoundError:  # a source tree or the Lambda layer: no installed metadata
    __version__ = "0+unknown"
