"""Configuration: a TOML file turned into frozen dataclasses.

The file comes from ``--config FILE`` or the ``MAILFORUM_CONFIG`` environment
variable; without either, ``./mailforum.toml`` is read when it exists and the
built-in defaults are used otherwise. Every key is documented in
``config.example.toml``. Errors name the file and the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailforum.errors import ConfigError

ENV_VAR = "MAILFORUM_CONFIG"
DEFAULT_PATH = Path("mailforum.toml")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str = "sqlite:///mailforum.db"
    # How long a writer waits for a lock before the SMTP client is told 451 (RELIABILITY F10).
    busy_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 8025
    lmtp_port: int = 8024
    max_message_size: int = 10 * 1024 * 1024
    max_header_size: int = 100 * 1024
    max_recipients: int = 100
    max_hops: int = 100
    idle_timeout: float = 300.0
    data_timeout: float = 600.0
    max_connections: int = 500
    max_connections_per_ip: int = 30
    max_connection_rate_per_ip: int = 300
    # Bytes that transactions in progress may announce with MAIL … SIZE= in total.
    max_pending_bytes: int = 256 * 1024 * 1024
    hard_error_limit: int = 20
    shutdown_grace: float = 30.0
    hostname: str = ""
    # Free disk space below this many times max_message_size → 452 4.3.1 at MAIL (Postfix rule).
    min_free_space_factor: float = 1.5


@dataclass(frozen=True, slots=True)
class RelayConfig:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    tls: bool = False
    username: str = ""
    password: str = ""
    max_connections: int = 10
    messages_per_connection: int = 100
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """The outbox and its delivery worker (RELIABILITY I5, §3.8: Postfix-style backoff)."""

    # First retry after a 4xx or a connection error, doubling per attempt up to retry_max.
    retry_base: float = 60.0
    retry_max: float = 4000.0
    # A copy still undelivered this long after it was queued is marked failed (Postfix 5d).
    lifetime_days: float = 5.0
    # Seconds a worker holds the rows it claimed; rows of a crashed worker are retried after it.
    lease: float = 600.0
    # Rows claimed per connection at a time, and seconds between looks at an idle outbox.
    claim_batch: int = 100
    poll_interval: float = 1.0
    # Days a per-recipient reply address (NAME+r-TOKEN@domain) keeps working.
    reply_token_days: int = 365
    # Days a VERP bounce address (NAME-bounces+TOKEN@domain) is recognised.
    verp_token_days: int = 30
    # A folder with per-list template overrides: <templates>/<list>/notification/post.txt.j2 …
    templates: str = ""


@dataclass(frozen=True, slots=True)
class SiteConfig:
    domain: str = "lists.example.org"
    base_url: str = "http://127.0.0.1:8080"
    secret_key: str = ""


@dataclass(frozen=True, slots=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    topics_per_page: int = 30
    posts_per_page: int = 50
    # Form submissions (join, watch) per client IP, and per address, in any form_window seconds.
    form_limit: int = 5
    form_window: float = 600.0
    # Seconds a form stays valid after it was shown (its CSRF token expires then).
    csrf_max_age: float = 7200.0
    # Comma list of proxy addresses whose X-Forwarded-For names the real client ("" trusts none).
    trusted_proxies: str = "127.0.0.1,::1"


@dataclass(frozen=True, slots=True)
class DigestConfig:
    hour: int = 7
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    authserv_id: str = ""
    post_rate_per_minute: int = 10
    post_rate_per_day: int = 200


@dataclass(frozen=True, slots=True)
class ProcessingConfig:
    # Attempts before a spool entry is parked as failed (Mailman MAX_BAK_COUNT = 3).
    max_attempts: int = 3
    retry_delay: float = 30.0
    batch_size: int = 100
    # Replies whose headers point nowhere may join a topic by subject within this many days.
    subject_window_days: int = 30
    # Seconds a claimed message stays reserved for the node processing it.
    lease: float = 30.0
    # This node's name in spool leases (empty: the host name). Nodes sharing a database need
    # distinct names; a restarted node takes back its own leases at once.
    node_name: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    web: WebConfig = field(default_factory=WebConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    source: str = "(defaults)"


_SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "smtp": SmtpConfig,
    "relay": RelayConfig,
    "site": SiteConfig,
    "web": WebConfig,
    "digest": DigestConfig,
    "security": SecurityConfig,
    "processing": ProcessingConfig,
    "outbound": OutboundConfig,
}


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Check a TOML value against the type of its default; ints are accepted for floats."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{where}: line breaks and NUL are not allowed")
    return value


def from_mapping(data: dict[str, Any], source: str = "(mapping)") -> Config:
    """Build a Config from parsed TOML, refusing unknown sections and keys."""
    sections: dict[str, Any] = {}
    for name, body in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        cls = _SECTIONS[name]
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in body.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown key [{name}] {key}")
            values[key] = _coerce(f"{source}: [{name}] {key}", getattr(defaults, key), value)
        sections[name] = cls(**values)
    config = Config(**sections, source=source)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Checks across keys; each message names the key."""
    where = config.source
    if not config.database.url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"{where}: [database] url must be sqlite:///… or postgresql+psycopg://…")
    for key in ("port", "lmtp_port"):
        port = getattr(config.smtp, key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{where}: [smtp] {key} {port} is not a TCP port")
    if config.smtp.max_message_size < 1024:
        raise ConfigError(f"{where}: [smtp] max_message_size must be at least 1024 bytes")
    if not 0 <= config.digest.hour <= 23:
        raise ConfigError(f"{where}: [digest] hour must be 0–23")
    if "@" in config.site.domain or not config.site.domain:
        raise ConfigError(f"{where}: [site] domain must be a bare domain like lists.example.org")
    out = config.outbound
    if not 0 < out.retry_base <= out.retry_max:
        raise ConfigError(f"{where}: [outbound] retry_base must be positive and at most retry_max")
    if out.lifetime_days <= 0 or out.lease <= 0 or out.poll_interval <= 0 or out.claim_batch < 1:
        raise ConfigError(
            f"{where}: [outbound] lifetime_days, lease, poll_interval, claim_batch must be positive"
        )
    if config.relay.max_connections < 1 or config.relay.messages_per_connection < 1:
        raise ConfigError(f"{where}: [relay] max_connections and messages_per_connection must be at least 1")
    if config.relay.starttls and config.relay.tls:
        raise ConfigError(f"{where}: [relay] starttls and tls exclude each other; pick one")
    if not 0 <= config.web.port <= 65535:
        raise ConfigError(f"{where}: [web] port {config.web.port} is not a TCP port")
    for key in ("topics_per_page", "posts_per_page", "form_limit"):
        if not 1 <= getattr(config.web, key) <= 1000:
            raise ConfigError(f"{where}: [web] {key} must be 1–1000")
    if config.processing.max_attempts < 1:
        raise ConfigError(f"{where}: [processing] max_attempts must be at least 1")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration named by ``path``, ``$MAILFORUM_CONFIG`` or ``./mailforum.toml``."""
    explicit = path or os.environ.get(ENV_VAR)
    if explicit:
        file = Path(explicit)
        if not file.exists():
            raise ConfigError(f"config file {file} does not exist")
    elif DEFAULT_PATH.exists():
        file = DEFAULT_PATH
    else:
        return Config()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return from_mapping(data, str(file))
