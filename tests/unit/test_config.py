"""`relay run`'s settings: one option table, range checks, `RELAY_*` names, the queue URL."""

import dataclasses
import math
from typing import Any

import pytest

from relay.config import RUN_OPTIONS, OptionSpec, RunConfig, env_name
from relay.errors import ConfigError

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/results"
RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
BOUNDED = [spec for spec in RUN_OPTIONS if spec.minimum is not None]
FLOATS = [spec for spec in RUN_OPTIONS if spec.type is float]


def valid_at(spec: OptionSpec, value: Any) -> dict[str, Any]:
    """Settings that set `spec` to `value` and keep the cross-field rules satisfied."""
    settings: dict[str, Any] = {"queue_url": QUEUE, spec.name: value}
    if spec.name == "visibility_timeout_s":
        settings["retry_budget_s"] = 0.1
    return settings


@pytest.mark.parametrize(
    ("option", "variable"),
    [
        ("--max-in-flight", "RELAY_MAX_IN_FLIGHT"),
        ("--queue-url", "RELAY_QUEUE_URL"),
        ("--log-format", "RELAY_LOG_FORMAT"),
        ("max-rps", "RELAY_MAX_RPS"),
        ("--exit-when-empty", "RELAY_EXIT_WHEN_EMPTY"),
    ],
)
def test_env_name_is_relay_and_the_option_in_upper_snake_case(option: str, variable: str) -> None:
    """Every option reads RELAY_<OPTION>, dashes to underscores, upper case (DESIGN §5)."""
    assert env_name(option) == variable


@pytest.mark.parametrize("spec", RUN_OPTIONS, ids=[spec.flag for spec in RUN_OPTIONS])
def test_every_option_fills_a_run_config_field_with_the_same_default(spec: OptionSpec) -> None:
    """Each RUN_OPTIONS entry names a RunConfig field whose default is the option's default."""
    assert spec.name in RUN_FIELDS
    assert RUN_FIELDS[spec.name].default == spec.default
    assert isinstance(spec.default, spec.type)
    assert spec.env == env_name(spec.flag)
    assert spec.flag.startswith("--")
    assert spec.help


def test_durations_end_in_s_and_nothing_else_does() -> None:
    """A flag's field gains `_s` exactly when the RunConfig field is a duration in seconds."""
    fields = {spec.flag: spec.name for spec in RUN_OPTIONS}
    assert fields["--visibility-timeout"] == "visibility_timeout_s"
    assert fields["--max-in-flight"] == "max_in_flight"
    assert fields["--max-rps"] == "max_rps"
    assert all(
        name.endswith("_s") == (flag != "--" + name.replace("_", "-"))
        for flag, name in fields.items()
    )
    assert len({spec.name for spec in RUN_OPTIONS}) == len(RUN_OPTIONS)


def test_defaults_are_valid() -> None:
    """A config with only a queue URL is valid and holds every option's default."""
    config = RunConfig(queue_url=QUEUE)
    for spec in RUN_OPTIONS:
        assert getattr(config, spec.name) == spec.default


@pytest.mark.parametrize("spec", BOUNDED, ids=[spec.flag for spec in BOUNDED])
def test_each_minimum_is_accepted_and_anything_below_it_is_a_config_error(
    spec: OptionSpec,
) -> None:
    """A value at an option's minimum is accepted; one below it raises ConfigError naming it."""
    assert spec.minimum is not None
    at_minimum = spec.type(spec.minimum)
    assert getattr(RunConfig(**valid_at(spec, at_minimum)), spec.name) == at_minimum
    below = at_minimum - 1 if spec.type is int else at_minimum - 0.05
    with pytest.raises(ConfigError, match=f"^{spec.flag} must be at least"):
        RunConfig(**valid_at(spec, below))


@pytest.mark.parametrize("spec", FLOATS, ids=[spec.flag for spec in FLOATS])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_duration_or_rate_that_is_not_a_finite_number_is_a_config_error(
    spec: OptionSpec, value: float
) -> None:
    """NaN and infinities (which click's FLOAT accepts) are refused, naming the option."""
    with pytest.raises(ConfigError, match=f"^{spec.flag} "):
        RunConfig(**valid_at(spec, value))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"http_port": 65_536}, "--http-port must be at most 65535"),
        ({"visibility_timeout_s": 43_201}, "--visibility-timeout must be at most 43200"),
        ({"retry_budget_s": 60.0}, "--retry-budget .* must be shorter than --visibility-timeout"),
        ({"log_format": "xml"}, "--log-format must be json or text"),
        ({"log_level": "LOUD"}, "--log-level must be DEBUG, INFO, WARNING or ERROR"),
        ({"wait_time_s": 21}, "--wait-time must be at most 20, not 21"),
        ({"wait_time_s": -1}, "--wait-time must be at least 0, not -1"),
    ],
)
def test_cross_field_and_choice_checks_raise_config_error(
    settings: dict[str, Any], message: str
) -> None:
    """Out-of-range ports, visibility timeouts, choices and budgets raise ConfigError."""
    with pytest.raises(ConfigError, match=message):
        RunConfig(queue_url=QUEUE, **settings)


def test_upper_bounds_are_accepted_at_the_bound() -> None:
    """The largest port and SQS's longest visibility timeout (12 hours) are accepted."""
    config = RunConfig(queue_url=QUEUE, http_port=65_535, visibility_timeout_s=43_200)
    assert (config.http_port, config.visibility_timeout_s) == (65_535, 43_200)


def test_log_level_is_case_insensitive() -> None:
    """`--log-level debug` is as good as DEBUG."""
    assert RunConfig(queue_url=QUEUE, log_level="debug").log_level == "debug"


def test_run_config_is_frozen() -> None:
    """A built config cannot be changed afterwards."""
    config = RunConfig(queue_url=QUEUE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_in_flight = 1  # type: ignore[misc]


def test_build_takes_the_queue_url_from_the_options_first() -> None:
    """--queue-url (or RELAY_QUEUE_URL through click) wins over COPILOT_QUEUE_URI."""
    config = RunConfig.build({"queue_url": QUEUE}, {"COPILOT_QUEUE_URI": "https://other"})
    assert config.queue_url == QUEUE


@pytest.mark.parametrize("given", [None, ""])
def test_build_takes_the_queue_url_from_copilot_when_no_option_gives_one(given: Any) -> None:
    """Without a queue URL option, COPILOT_QUEUE_URI from the injected environment is used."""
    config = RunConfig.build({"queue_url": given}, {"COPILOT_QUEUE_URI": QUEUE})
    assert config.queue_url == QUEUE
    assert RunConfig.build({}, {"COPILOT_QUEUE_URI": QUEUE}).queue_url == QUEUE


def test_build_without_any_queue_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No option and no COPILOT_QUEUE_URI in the injected mapping is an error; os.environ is
    never read."""
    monkeypatch.setenv("COPILOT_QUEUE_URI", QUEUE)
    monkeypatch.setenv("RELAY_QUEUE_URL", QUEUE)
    with pytest.raises(ConfigError, match="no queue: pass --queue-url"):
        RunConfig.build({"queue_url": None}, {})
    with pytest.raises(ConfigError, match="no queue"):
        RunConfig.build({}, {"COPILOT_QUEUE_URI": ""})


def test_build_drops_unset_options_and_keeps_the_rest() -> None:
    """Options that click left as None take their defaults; given ones are used."""
    options = {spec.name: None for spec in RUN_OPTIONS}
    config = RunConfig.build({**options, "queue_url": QUEUE, "max_in_flight": 3}, {})
    assert config == RunConfig(queue_url=QUEUE, max_in_flight=3)


def test_build_with_every_cli_default_equals_the_plain_defaults() -> None:
    """Building from the CLI's defaults gives the same config as the dataclass's defaults."""
    options = {spec.name: spec.default for spec in RUN_OPTIONS}
    built = RunConfig.build({**options, "queue_url": QUEUE, "exit_when_empty": False}, {})
    assert built == RunConfig(queue_url=QUEUE)


def test_build_refuses_settings_it_does_not_know() -> None:
    """An unknown setting is a ConfigError naming it, not a TypeError."""
    with pytest.raises(ConfigError, match="unknown settings: max_inflight"):
        RunConfig.build({"queue_url": QUEUE, "max_inflight": 3}, {})


def test_build_applies_the_range_checks() -> None:
    """Values from the command line go through the same checks as direct construction."""
    with pytest.raises(ConfigError, match="--max-in-flight must be at least 1, not 0"):
        RunConfig.build({"queue_url": QUEUE, "max_in_flight": 0}, {})
