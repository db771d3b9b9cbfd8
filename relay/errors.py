"""The error types every module shares; `cli` maps them to exit codes."""


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class ConfigError(RelayError):
    """Bad usage or configuration: the CLI prints it on one line and exits 2."""
