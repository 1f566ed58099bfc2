"""`detect.yaml`: the one configuration file, with `${ENV}` interpolation.

Interpolation happens on string values after parsing, never on the text, so an
environment variable can never inject YAML structure. Secrets (the API key, webhook URLs
and signing secrets) are `SecretStr`: they print as `**********` in errors and logs.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from engine.detection.yaml_lines import YamlError, line_at, load_yaml
from engine.durations import parse_duration
from engine.errors import ConfigError

DEFAULT_PATH = Path("detect.yaml")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


class SourceConfig(_Strict):
    base_url: str = "https://api.anthropic.com"
    api_key: SecretStr | None = None
    organization_ids: list[str] = Field(default_factory=list)
    poll_interval: timedelta = timedelta(seconds=60)
    lookback: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=10)
    silence_alert_after: timedelta = timedelta(hours=24)

    _durations = field_validator(
        "poll_interval", "lookback", "overlap", "silence_alert_after", mode="before"
    )(_duration)


class StateConfig(_Strict):
    path: Path = Path(".detect/state.db")


class DestinationConfig(_Strict):
    type: Literal["slack", "webhook", "console"]
    url: SecretStr | None = None
    secret: SecretStr | None = None
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "info"

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Config(_Strict):
    source: SourceConfig = Field(default_factory=SourceConfig)
    rules: list[Path] = Field(default_factory=lambda: [Path("rules")])
    state: StateConfig = Field(default_factory=StateConfig)
    destinations: dict[str, DestinationConfig] = Field(
        default_factory=lambda: {"terminal": DestinationConfig(type="console")}
    )
    quarantine: Path = Path(".detect/quarantine.jsonl")


def _interpolate(value: Any, where: str, environ: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{where}.{k}" if where else str(k), environ)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _VARIABLE.sub(replace, value)


def load_config(path: Path, environ: dict[str, str] | None = None) -> Config:
    """Read and check a configuration file; `ConfigError` names the file, line and key."""
    try:
        document = load_yaml(path)
    except YamlError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc.message}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the configuration must be a YAML mapping")
    values = _interpolate(document, "", dict(os.environ if environ is None else environ))
    try:
        config = Config.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = [p for p in error["loc"]]
            key = ".".join(str(p) for p in loc)
            lines.append(f"{path}:{line_at(document, loc)}: [{key}] {error['msg']}")
        raise ConfigError("\n".join(lines)) from None
    base = path.parent
    config.rules = [p if p.is_absolute() else base / p for p in config.rules]
    if not config.state.path.is_absolute():
        config.state.path = base / config.state.path
    if not config.quarantine.is_absolute():
        config.quarantine = base / config.quarantine
    return config
