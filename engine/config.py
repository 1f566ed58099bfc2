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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.durations import parse_duration
from engine.errors import ConfigError
from engine.secrets import has_control_characters, register
from engine.yaml_lines import YamlError, line_at, load_yaml

DEFAULT_PATH = Path("detect.yaml")
# Where the state database and rejected records go when no configuration says otherwise.
DEFAULT_STATE = Path(".detect/state.db")
DEFAULT_QUARANTINE = Path(".detect/quarantine.jsonl")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


_CONTROL_MESSAGE = "holds a control character (a line break?); the value is not shown"


def _no_control(value: Any) -> Any:
    """A secret (or each value of a mapping of them) without control characters: a key
    with a line break is refused by the HTTP library in an error that quotes it."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    values = value.values() if isinstance(value, dict) else [value]
    if any(isinstance(v, str) and has_control_characters(v) for v in values):
        raise ValueError(_CONTROL_MESSAGE)
    return value


class SourceConfig(_Strict):
    base_url: str = "https://api.anthropic.com"
    api_key: SecretStr | None = None
    organization_ids: list[str] = Field(default_factory=list)
    poll_interval: timedelta = timedelta(seconds=60)
    lookback: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=10)
    silence_alert_after: timedelta = timedelta(hours=24)
    # Ingestion knobs (docs/ingestion.md): a source_health alert once polling has failed
    # this long; the page size (`limit`); this process's share of the organization's
    # 600 requests a minute; retries of one request; one request's timeout.
    failure_alert_after: timedelta = timedelta(minutes=15)
    # A source_health alert when the pipeline makes no progress this long while
    # activities wait (a rule or the state store hung: engine/runs/live.py, Watchdog).
    stall_alert_after: timedelta = timedelta(minutes=5)
    page_size: int = Field(default=1000, ge=1, le=5000)
    max_requests_per_minute: int = Field(default=200, ge=1, le=600)
    max_retries: int = Field(default=5, ge=0, le=20)
    request_timeout: timedelta = timedelta(seconds=60)
    # The most bytes of one response held in memory; a larger page is refused and asked
    # for again with half the `limit` (docs/ingestion.md).
    max_page_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    _secrets = field_validator("api_key", mode="before")(_no_control)
    _durations = field_validator(
        "poll_interval",
        "lookback",
        "overlap",
        "silence_alert_after",
        "failure_alert_after",
        "stall_alert_after",
        "request_timeout",
        mode="before",
    )(_duration)


class RedisSettings(_Strict):
    """`state.redis:` where the shared state lives when `state.backend` is `redis`
    (docs/state.md). Credentials are fields, not parts of the URL: the URL appears in
    error messages, the password never does (it is a secret, registered for redaction)."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    # A CA bundle to verify a rediss:// server with instead of the system store.
    ca_file: Path | None = None
    key_prefix: str = Field(default="detect:", min_length=1, max_length=64)
    # A worker's lease on a partition (an organization, or `*`) lasts this long unless
    # renewed; another worker takes the partition over once it runs out (docs/scaling.md).
    lease_ttl: timedelta = timedelta(seconds=30)
    # One command's connect and reply timeout.
    timeout: timedelta = timedelta(seconds=10)

    _secrets = field_validator("password", mode="before")(_no_control)
    _durations = field_validator("lease_ttl", "timeout", mode="before")(_duration)

    @field_validator("url", mode="after")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        """Errors here quote the scheme at most: a URL may carry a password, in its
        user part or its query."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("`url` is not a valid URL, e.g. redis://127.0.0.1:6379/0") from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("`url` must be redis://HOST:PORT/DB (or rediss:// for TLS)")
        if parts.username or parts.password:
            raise ValueError(
                "`url` holds credentials: put them in `username` and `password` "
                "(password: ${DETECT_REDIS_PASSWORD}), where they are kept secret"
            )
        if parts.query or value.strip().endswith("?"):
            # redis-py reads options (a password among them) from the query, which no
            # message would redact: refused, and never quoted.
            raise ValueError(
                "`url` holds a query string (`?...`): put credentials in `username` and "
                "`password` (password: ${DETECT_REDIS_PASSWORD}), where they are kept "
                "secret; other options are not read from the URL"
            )
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError("`url`'s path is the database number, e.g. /0")
        return value.strip()

    @field_validator("key_prefix", mode="after")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c.isspace() or c in "*?[]" for c in value):
            raise ValueError("`key_prefix` may not hold spaces or the glob characters *?[]")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> RedisSettings:
        if self.ca_file is not None and not self.url.startswith("rediss://"):
            raise ValueError("`ca_file` is only used with a rediss:// (TLS) url")
        if self.lease_ttl < timedelta(seconds=2):
            raise ValueError("`lease_ttl` must be at least 2s")
        if self.timeout <= timedelta(0):
            raise ValueError("`timeout` must be positive")
        return self


class StateConfig(_Strict):
    """`state:` the SQLite file (the default), or a shared Redis (`backend: redis`, for
    several workers: docs/state.md)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: Path = DEFAULT_STATE
    redis: RedisSettings | None = None

    @model_validator(mode="after")
    def _coherent(self) -> StateConfig:
        if self.backend == "redis" and self.redis is None:
            raise ValueError("backend: redis needs `redis:` with at least a `url`")
        if self.backend == "sqlite" and self.redis is not None:
            raise ValueError("`redis:` is only used with backend: redis (add it, or drop `redis:`)")
        return self


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Headers the webhook sender owns: a custom header may not replace the signature scheme,
# the body's framing or the content type the signature covers.
_RESERVED_HEADERS = {"content-type", "content-length", "host", "transfer-encoding", "connection"}
_MIN_SECRET_BYTES = 24  # the Standard Webhooks minimum


def _is_loopback(host: str | None) -> bool:
    import ipaddress

    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def signing_key(secret: str) -> bytes:
    """The HMAC key behind a webhook secret: `whsec_<base64>` (the Standard Webhooks
    serialization) decodes to its bytes; any other string is used as its UTF-8 bytes."""
    import base64
    import binascii

    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    return secret.encode("utf-8")


_SEVERITIES = ("info", "low", "medium", "high", "critical")


class DigestConfig(_Strict):
    """`digest: {below: medium, every: 1h}`: alerts of a severity strictly below `below`
    are batched into one message per `every` instead of one message each. Periods are
    aligned to multiples of `every` since 1970-01-01 UTC on the dispatcher's clock, so
    `1h` closes on the hour and `1d` at midnight UTC whenever the process started."""

    below: Literal["low", "medium", "high", "critical"]
    every: timedelta

    @field_validator("below", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.lower()
            if value == "info":
                raise ValueError("`below: info` would put nothing in the digest (use low or above)")
            if value not in _SEVERITIES:
                raise ValueError(
                    f"`below` must be one of low, medium, high, critical, not {value[:20]!r}"
                )
        return value

    @field_validator("every", mode="before")
    @classmethod
    def _period(cls, value: Any) -> timedelta:
        period = _duration(value)
        if not timedelta(minutes=1) <= period <= timedelta(days=7):
            raise ValueError("`every` must be between 1m and 7d")
        return period


# -- the destination types beyond Slack, webhooks and the console ---------------------
# `teams`, `google_chat`, `pagerduty`, `email` and `templated_webhook`: their few
# settings and per-type rules. Errors never quote a URL, a key, a password or a header
# value.

NEW_TYPES = ("teams", "google_chat", "pagerduty", "email", "templated_webhook")
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def _address(value: str) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n\0,;<>"):
        raise ValueError("an email address must look like name@example.com")
    return value.strip()


class SmtpConfig(BaseModel):
    """`smtp:` of an email destination."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    # starttls (587): upgrade before anything else; tls (465): implicit TLS; none: plain
    # SMTP, for a relay on loopback only (or with allow_insecure: true).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    # A CA bundle to verify the server with instead of the system store.
    ca_file: str | None = None
    allow_insecure: bool = False

    _addresses = field_validator("from_address", mode="after")(_address)
    _secrets = field_validator("password", mode="before")(_no_control)

    @field_validator("to", mode="after")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @model_validator(mode="after")
    def _coherent(self) -> SmtpConfig:
        if self.port is None:
            self.port = _DEFAULT_PORTS[self.security]
        if (self.username is None) != (self.password is None):
            raise ValueError("`username` and `password` go together")
        if self.security == "none" and not (_is_loopback(self.host) or self.allow_insecure):
            raise ValueError(
                "`security: none` sends mail (and any password) in clear: use starttls or "
                "tls, or allow_insecure: true for a relay you trust"
            )
        if any(c in self.host for c in "\r\n\0/ "):
            raise ValueError("`host` is not a host name")
        return self


def _check_template(node: Any, where: str = "") -> None:
    """Every string of a templated webhook's `template` compiles as a `{path}` template
    (the holes rules use in titles); raises `ValueError` with the place of a bad one."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_template(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_template(value, f"{where}[{index}]")
    elif isinstance(node, str):
        import jmespath

        from engine.detection.operators import MatchError
        from engine.detection.templates import compile_template

        try:
            compile_template(node, jmespath.Options())
        except MatchError as error:
            raise ValueError(f"template{where}: {error}") from None


def check_new_type(config: Any) -> None:
    """The per-type rules of the new destination types (and the fields only they use)."""
    kind = config.type
    only = {
        "routing_key": "pagerduty",
        "smtp": "email",
        "template": "templated_webhook",
    }
    for field, owner in only.items():
        if getattr(config, field) is not None and kind != owner:
            raise ValueError(f"`{field}` is only used by type: {owner}")
    if config.resolve_on_close and kind != "pagerduty":
        raise ValueError("`resolve_on_close` is only used by type: pagerduty")
    if kind == "pagerduty":
        if config.routing_key is None:
            raise ValueError("type: pagerduty needs a `routing_key` (an Events API v2 key)")
        if config.url is None:
            config.url = SecretStr(PAGERDUTY_URL)
    elif kind == "email":
        if config.smtp is None:
            raise ValueError("type: email needs `smtp` (host, from, to, …)")
    elif kind == "templated_webhook":
        if not isinstance(config.template, dict | list) or not config.template:
            raise ValueError("type: templated_webhook needs a `template` (a mapping or list)")
        _check_template(config.template)


class DestinationConfig(_Strict):
    """One place alerts go. Routing: an alert reaches every destination whose filters it
    passes, unless its rule names destinations (then exactly those)."""

    type: Literal[
        "slack",
        "webhook",
        "console",
        "teams",
        "google_chat",
        "pagerduty",
        "email",
        "templated_webhook",
    ]
    url: SecretStr | None = None
    secret: SecretStr | None = None
    # During a key rotation the webhook is signed with both; receivers accept either.
    previous_secret: SecretStr | None = None
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "info"
    # Filters (all that are set must hold). Rule ids are glob patterns (`anthropic.sso.*`).
    rule_ids: list[str] = Field(default_factory=list)
    exclude_rule_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)
    kinds: list[Literal["detection", "rule_error", "source_health"]] = Field(
        default_factory=lambda: ["detection", "rule_error", "source_health"]
    )
    # Webhook only: extra request headers (for example an Authorization for a gateway).
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: timedelta = timedelta(seconds=10)
    allow_insecure_http: bool = False
    # Retries: exponential backoff with jitter from the first delay up to the longest,
    # honouring Retry-After; a delivery still failing after `give_up_after` is dead.
    give_up_after: timedelta = timedelta(hours=24)
    retry_initial_delay: timedelta = timedelta(seconds=2)
    retry_max_delay: timedelta = timedelta(minutes=10)
    # One more message when an alert that grew after its notification closes.
    summary_on_close: bool = False
    # Default: Slack 1 message per second, webhooks and the console unlimited.
    max_messages_per_second: float | None = Field(default=None, gt=0)
    max_burst: int = Field(default=1, ge=1)
    # Batch alerts below a severity into one message per period (docs/delivery.md, Digests).
    digest: DigestConfig | None = None
    # The types checked by `check_new_type` above: PagerDuty's Events v2 routing key and
    # its `resolve` on close, email's SMTP settings, a templated webhook's body.
    routing_key: SecretStr | None = None
    resolve_on_close: bool = False
    smtp: SmtpConfig | None = None
    template: dict[str, Any] | list[Any] | None = None

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    _secrets = field_validator(
        "url", "secret", "previous_secret", "routing_key", "headers", mode="before"
    )(_no_control)
    _delivery_durations = field_validator(
        "timeout", "give_up_after", "retry_initial_delay", "retry_max_delay", mode="before"
    )(_duration)

    @model_validator(mode="after")
    def _coherent(self) -> DestinationConfig:
        """Errors here never quote the URL, the secret or a header value."""
        from urllib.parse import urlsplit

        check_new_type(self)
        if self.type in ("console", "email"):
            for name in ("url", "secret", "previous_secret"):
                if getattr(self, name) is not None:
                    raise ValueError(f"`{name}` is not used by type: {self.type}")
        else:
            if self.url is None:
                raise ValueError(f"type: {self.type} needs a `url`")
            try:
                parts = urlsplit(self.url.get_secret_value().strip())
                host = parts.hostname
            except ValueError:
                raise ValueError("`url` is not a valid URL") from None
            if parts.scheme not in ("https", "http") or not host:
                raise ValueError("`url` must be an https:// URL")
            if parts.scheme == "http" and not (_is_loopback(host) or self.allow_insecure_http):
                raise ValueError(
                    "`url` must use https (plain http is allowed for loopback addresses, "
                    "or with allow_insecure_http: true)"
                )
        if self.type in ("webhook", "templated_webhook"):
            if self.secret is None and self.type == "webhook":
                raise ValueError("type: webhook needs a `secret` to sign requests with")
            for name in ("secret", "previous_secret"):
                value = getattr(self, name)
                if value is not None and len(signing_key(value.get_secret_value())) < (
                    _MIN_SECRET_BYTES
                ):
                    raise ValueError(
                        f"`{name}` is too short: use at least 24 random bytes, for example "
                        "whsec_ followed by the base64 of 32 random bytes"
                    )
        else:
            if self.secret is not None or self.previous_secret is not None:
                raise ValueError("`secret` is only used by type: webhook (and templated_webhook)")
            if self.headers:
                raise ValueError("`headers` is only used by type: webhook (and templated_webhook)")
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            lowered = name.lower()
            if lowered in _RESERVED_HEADERS or lowered.startswith("webhook-"):
                raise ValueError(f"header {name!r} is set by the sender and cannot be changed")
            if any(ch in value.get_secret_value() for ch in "\r\n\0"):
                raise ValueError(f"header {name!r}: the value holds a line break")
        if self.digest is not None and _SEVERITIES.index(self.digest.below) <= (
            _SEVERITIES.index(self.min_severity)
        ):
            raise ValueError(
                f"`digest.below: {self.digest.below}` is not above `min_severity: "
                f"{self.min_severity}`, so no alert would ever reach the digest"
            )
        if self.retry_max_delay < self.retry_initial_delay:
            raise ValueError("retry_max_delay must not be shorter than retry_initial_delay")
        return self


class RuleBudgetConfig(_Strict):
    """`rule_budget:` the time a rule with code (Python, Panther) may spend on one
    activity unless it sets its own `time_budget`, and the overruns after which it is
    quarantined for the rest of the process (docs/reliability.md)."""

    per_activity: timedelta = timedelta(seconds=1)
    quarantine_after: int = Field(default=3, ge=1, le=1000)

    @field_validator("per_activity", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> timedelta:
        if isinstance(value, bool):
            raise ValueError("`per_activity` is a duration (1s) or a number of seconds (0.25)")
        if isinstance(value, int | float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("`per_activity` must be a finite number of seconds")
            budget = timedelta(seconds=value) if -1e6 < value < 1e6 else timedelta(days=12)
        else:
            budget = _duration(value)
        if not timedelta(milliseconds=1) <= budget <= timedelta(seconds=60):
            raise ValueError("`per_activity` must be between 0.001 and 60 seconds")
        return budget


class MetricsConfig(_Strict):
    """`metrics:` where `detect run` serves `/metrics` and `/healthz` (docs/deploy.md);
    off without a `port`. `--metrics-port` and `--metrics-address` take precedence."""

    port: int | None = Field(default=None, ge=0, le=65535)
    address: str = Field(default="127.0.0.1", min_length=1)


class RuleOverrideConfig(_Strict):
    """One entry of `rule_overrides:` (checked against the loaded rules when they load)."""

    severity: str | None = None
    enabled: bool | None = None
    dedup_window: str | None = None
    lists: dict[str, list[str]] = Field(default_factory=dict)


class Config(_Strict):
    # The environment variables left unset in the secret sections: (key, name, where).
    _unset: list[Any] = PrivateAttr(default_factory=list)

    source: SourceConfig = Field(default_factory=SourceConfig)
    # `builtin` names the pack shipped with the engine, beside rules folders.
    rules: list[Path] = Field(default_factory=lambda: [Path("rules")])
    rule_overrides: dict[str, RuleOverrideConfig] = Field(default_factory=dict)
    rule_budget: RuleBudgetConfig = Field(default_factory=RuleBudgetConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    destinations: dict[str, DestinationConfig] = Field(
        default_factory=lambda: {"terminal": DestinationConfig(type="console")}
    )
    quarantine: Path = DEFAULT_QUARANTINE
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


def secret_values(model: BaseModel, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every secret of a configuration (each `SecretStr`, however deep), with its key path:
    the API key, destination URLs, signing secrets, header values, routing keys, the SMTP
    password."""
    found: list[tuple[tuple[Any, ...], str]] = []

    def walk(value: Any, where: tuple[Any, ...]) -> None:
        if isinstance(value, SecretStr):
            found.append((where, value.get_secret_value()))
        elif isinstance(value, BaseModel):
            for name, field in type(value).model_fields.items():
                walk(getattr(value, name), (*where, field.alias or name))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*where, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*where, index))

    walk(model, loc)
    return found


def register_secrets(config: Config) -> None:
    """Register the configuration's secrets with the one redaction (engine/secrets.py)."""
    register(secret for _, secret in secret_values(config))


# The sections whose secrets only some commands use: `source` (the API key, for polling)
# and `destinations` (for delivering). A variable left unset in one of them is not an
# error when the configuration loads; `require_secrets` refuses it where it is used.
SECRET_SECTIONS = ("source", "destinations")
_UNSET_URL = "https://unset.invalid/"
_UNSET = "unset" + "0" * 32  # long enough to pass as a webhook secret


def _interpolate(
    value: Any, steps: list[Any], environ: dict[str, str], origin: Any, unset: list[Any]
) -> Any:
    """Replace `${VAR}` in every string; `origin` is (file, document) for error lines. A
    variable that is not set (and has no default) is noted in `unset` as (key, name,
    line) and stands in as a placeholder that passes the checks."""
    if isinstance(value, dict):
        return {k: _interpolate(v, [*steps, k], environ, origin, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, [*steps, i], environ, origin, unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        path, document = origin
        key = ".".join(str(s) for s in steps)
        if name in environ:
            if has_control_characters(environ[name]):
                raise ConfigError(
                    f"{path}:{line_at(document, steps)}: [{key}] environment variable {name} "
                    "holds a control character (a line break?); its value is not shown"
                )
            return environ[name]
        if default is not None:
            return default
        unset.append((steps, name, f"{path}:{line_at(document, steps)}"))
        whole = found.group(0) == value
        return _UNSET_URL if whole and str(steps[-1]).endswith("url") else _UNSET

    return _VARIABLE.sub(replace, value)


def _unset_message(unset: list[Any]) -> str:
    lines = [
        f"{where}: [{'.'.join(str(s) for s in steps)}] environment variable {name} is not set"
        for steps, name, where in unset
    ]
    names = ", ".join(dict.fromkeys(name for _, name, _ in unset))
    if len(unset) > 1:
        lines.append(f"set: {names}")
    return "\n".join(lines)


def require_secrets(config: Config, *sections: str, only: Any = None) -> None:
    """A `ConfigError` naming, all at once, every environment variable left unset in
    `sections` of the configuration (in `only` of its destinations, when given): a
    command that polls or delivers needs them; one that reads the state file does not."""
    missing = [
        item
        for item in config._unset
        if item[0][0] in sections
        and (only is None or item[0][0] != "destinations" or item[0][1] in only)
    ]
    if missing:
        raise ConfigError(_unset_message(missing))


def unset_variables(config: Config) -> list[str]:
    """The environment variables the configuration names but the environment lacks."""
    return list(dict.fromkeys(name for _, name, _ in config._unset))


def _walk_type(tp: Any) -> Any:
    """`tp` without `None` alternatives (`X | None` is `X`)."""
    import types
    from typing import Union, get_args, get_origin

    if get_origin(tp) in (Union, types.UnionType):
        kept = [a for a in get_args(tp) if a is not type(None)]
        if len(kept) == 1:
            return _walk_type(kept[0])
    return tp


def _keys_at(loc: list[Any]) -> list[str]:
    """The keys a mapping at `loc` of the configuration may hold (its model's fields)."""
    from typing import get_args, get_origin

    tp: Any = Config
    for step in loc:
        tp = _walk_type(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or n: f for n, f in tp.model_fields.items()}
            if step not in fields:
                return []
            tp = fields[step].annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        else:
            return []
    tp = _walk_type(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _did_you_mean(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe_error(error: Any) -> str:
    """One pydantic error of the configuration in the words of the rule errors: an
    unknown key with the allowed ones, a value outside a choice with the choices, each
    with a did-you-mean."""
    loc = list(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and loc:
        allowed = _keys_at(loc[:-1])
        return f"unknown key; allowed: {', '.join(allowed)}{_did_you_mean(str(loc[-1]), allowed)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        given = error.get("input")
        shown = repr(given[:40]) if isinstance(given, str) else repr(given)[:40]
        return (
            f"{shown} is not one of {', '.join(choices)}"
            f"{_did_you_mean(given, choices) if isinstance(given, str) else ''}"
        )
    if kind == "missing":
        return "required key missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def load_config(
    path: Path, environ: dict[str, str] | None = None, *, needs: tuple[str, ...] = ()
) -> Config:
    """Read and check a configuration file; `ConfigError` names the file, line and key.
    An environment variable that is not set is an error here outside the secret
    sections, and in those of `needs`; elsewhere `require_secrets` refuses it on use."""
    try:
        document = load_yaml(path)
    except YamlError as exc:
        raise ConfigError(f"{path}:{exc.line}: {exc.message}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the configuration must be a YAML mapping")
    unset: list[Any] = []
    values = _interpolate(
        document, [], dict(os.environ if environ is None else environ), (path, document), unset
    )
    fatal = [u for u in unset if u[0][0] not in SECRET_SECTIONS or u[0][0] in needs]
    if fatal:
        raise ConfigError(_unset_message(fatal))
    try:
        config = Config.model_validate(values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = [p for p in error["loc"]]
            key = ".".join(str(p) for p in loc)
            lines.append(f"{path}:{line_at(document, loc)}: [{key}] {describe_error(error)}")
        raise ConfigError("\n".join(lines)) from None
    for loc, secret in secret_values(config):
        if has_control_characters(secret):
            key = ".".join(str(p) for p in loc)
            raise ConfigError(f"{path}:{line_at(document, list(loc))}: [{key}] {_CONTROL_MESSAGE}")
    config._unset = unset
    register_secrets(config)
    base = path.parent
    config.rules = [p if p.is_absolute() or str(p) == "builtin" else base / p for p in config.rules]
    if not config.state.path.is_absolute():
        config.state.path = base / config.state.path
    redis = config.state.redis
    if redis is not None and redis.ca_file is not None and not redis.ca_file.is_absolute():
        redis.ca_file = base / redis.ca_file
    if not config.quarantine.is_absolute():
        config.quarantine = base / config.quarantine
    return config


_DURATION_SCHEMA = {
    "type": ["string", "number"],
    "pattern": "^([0-9]+[smhd])+$",
    "description": "a duration: one or more <integer><s|m|h|d> groups, e.g. 90s, 1h30m, 7d",
}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of `detect.yaml` (`detect.schema.json`), from the models: editors
    complete and check keys with it; durations are written as `90s`, `1h30m`."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("format") == "duration":
                extra = {k: v for k, v in node.items() if k in ("default", "title")}
                if isinstance(extra.get("default"), str):
                    extra.pop("default")
                return {**_DURATION_SCHEMA, **extra}
            return {k: fix(v) for k, v in node.items() if k != "writeOnly"}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    schema = fix(Config.model_json_schema(mode="validation"))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "detect.yaml",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def write_schema(path: Path = Path("detect.schema.json")) -> None:
    """Write `config_schema()` (after a change to the models: `python -m engine.config`)."""
    import json

    path.write_text(json.dumps(config_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_schema()
