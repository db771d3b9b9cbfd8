"""relay: SQS step results in, AWS Transfer Family SendWorkflowStepState callbacks out."""

__version__ = "0.1.0"
