"""What every command module of the CLI shares: exit codes, and click options built from a
config dataclass's fields (the defaults live on the dataclass alone)."""

from collections.abc import Callable
from typing import Any, Final

import click

from relay.config import options_of

Command = Callable[..., Any]

EXIT_OK: Final = 0
EXIT_FAILURES: Final = 1
EXIT_USAGE: Final = 2


def config_options(
    cls: type, *, env: bool = False, skip: tuple[str, ...] = ()
) -> Callable[[Command], Command]:
    """One click option per option field of a config dataclass, with its default (and, for
    `relay run`, its RELAY_* variable): the defaults live on the dataclass alone."""

    def decorate(command: Command) -> Command:
        for spec in reversed([s for s in options_of(cls) if s.name not in skip]):
            settings: dict[str, Any] = {"default": spec.default, "help": spec.help}
            declarations = [spec.flag, spec.name]
            if spec.type is bool and spec.default:
                # --name/--no-name switches; the variable takes true/false, 1/0.
                declarations[0] = f"{spec.flag}/--no-{spec.flag[2:]}"
            elif spec.type is bool:
                settings["is_flag"] = True
            else:
                settings["type"] = click.Choice(spec.choices) if spec.choices else spec.type
            if not settings.get("is_flag"):
                settings["show_default"] = True
            if env:
                settings.update(envvar=spec.env, show_envvar=True)
            command = click.option(*declarations, **settings)(command)
        return command

    return decorate
