"""relay: SQS step results in, AWS Transfer Family SendWorkflowStepState callbacks out."""

from typing import Final

__version__ = "0.1.0"

DISTRIBUTION: Final = "transfer-family-relay"
"""The name relay is installed under (pyproject's `name`; `relay` on PyPI is another project)."""
