"""Configuration: a TOML file turned into frozen dataclasses.

The file comes from ``--config FILE`` or the ``MAILFORUM_CONFIG`` environment
variable; without either, ``./mailforum.toml`` is read when it exists and the
built-in defaults are used otherwise. Relative paths in a file (the SQLite database,
``[outbound] templates``, ``[dkim] key_file``) are taken from the file's folder, not
from the working directory. Every key is documented in ``config.example.toml``.
Errors name the file and the key.
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
    # Seconds an unused connection stays open before the worker QUITs it: well below the
    # relay's own idle limit (Postfix smtpd_timeout, 300 s), which would close it with a 421.
    idle_timeout: float = 60.0


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
    # Copies one connection may hand to the relay before their 250 is recorded: after a
    # crash at most this many per connection are sent twice (1: only the copy in hand).
    unrecorded: int = 8
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
    # Accept member addresses at special-use and dotless domains (alice@localhost,
    # bob@host.local, carol@x.test, dave@mailhost): for intranet and test installs only.
    allow_local_domains: bool = False


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
    # Signing in by mail: minutes a mailed link works, days a session lasts, and sign-in
    # mails per address in any form_window seconds (per client: form_limit).
    signin_minutes: float = 15.0
    session_days: float = 30.0
    signin_per_address: int = 3


@dataclass(frozen=True, slots=True)
class DigestConfig:
    # Hour (0–23) in timezone (an IANA name) at which each list's digests are queued; a
    # list may override both (lists.digest_hour, lists.digest_timezone).
    hour: int = 7
    timezone: str = "UTC"
    # The day weekly digests go out (mon … sun); a week whose day was missed catches up once.
    weekly_day: str = "mon"
    # Seconds after its hour a missed run (a stopped or busy scheduler) still runs, once.
    misfire_grace: float = 21600.0
    # A post longer than this many characters (after trimming quotes and signature) is cut,
    # with a link to the full post on the web.
    max_post_chars: int = 2000


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
class SpoolConfig:
    """Retention (core/retention.py), run by housekeeping in ``serve`` and ``mailforum housekeeping``."""

    # Days the raw bytes of a processed spool entry are kept (posts keep their own copy); also
    # the days sent outbox copies (at least [outbound] verp_token_days) and confirmations past
    # their expiry are kept.
    keep_days: float = 30.0


@dataclass(frozen=True, slots=True)
class DkimConfig:
    """DKIM signing of outgoing mail (mail/dkim_sign.py); off while key_file is empty."""

    key_file: str = ""
    selector: str = ""
    # The d= domain; empty means [site] domain (aligned with our From, DMARC-safe).
    domain: str = ""


@dataclass(frozen=True, slots=True)
class BouncesConfig:
    """Bounce scoring (core/bounces.py; RELIABILITY S8, DESIGN: bounces)."""

    # Score a hard (5.x.x) bounce adds, and a soft (4.x.x, delayed) one at most once a day.
    hard_score: float = 1.0
    soft_score: float = 0.5
    # At this score delivery to the member is disabled at once; warnings follow.
    threshold: float = 5.0
    # A score with no new bounce for this many days starts again from zero.
    stale_days: float = 7.0
    # Warnings to a disabled member, this many days apart; after the last one the member is removed.
    warnings: int = 3
    warning_interval_days: float = 7.0
    # Days the re-enable link and address in a warning keep working.
    enable_token_days: int = 30
    # Seconds between housekeeping runs (warnings, removals, held-post expiry) in ``serve``.
    housekeeping_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class ModerationConfig:
    """Held posts and their moderators (core/moderation.py)."""

    # Held posts nobody decided on are discarded after this many days (a summary goes to moderators).
    held_expire_days: float = 14.0
    # Days the approve/reject/discard links and reply addresses in a notice keep working.
    token_days: int = 14


@dataclass(frozen=True, slots=True)
class SubscriptionsConfig:
    """Commands by mail, double opt-in and automatic answers (RELIABILITY I6, S4–S7, S23)."""

    # Days a confirmation (subscribe, unsubscribe, watch) can be confirmed.
    confirm_days: float = 7.0
    # Confirmation mails one address gets per 24 h across all lists; more requests send nothing (S5).
    confirmations_per_day: int = 3
    # Automatic answers one address gets per 24 h across all lists (Mailman max_autoresponses_per_day).
    answers_per_day: int = 10
    # Command lines read from one mail; the rest is ignored (Mailman email_commands_max_lines).
    max_command_lines: int = 10
    # Ask DNS whether an address's domain takes mail before sending it a confirmation.
    check_dns: bool = False
    # Days the per-recipient one-click unsubscribe link in List-Unsubscribe keeps working.
    unsubscribe_link_days: int = 365


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The JSON API under /api/v1 (web/api.py)."""

    # Largest request body accepted, in bytes (a bigger one is refused with 413).
    max_body: int = 1024 * 1024
    # Requests per token in any rate_window seconds, counted in the database (all nodes).
    rate_limit: int = 1200
    rate_window: float = 60.0
    # Items per page of a collection, and the most a client may ask for with ?limit=.
    page_size: int = 500
    max_page_size: int = 2000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """/metrics (Prometheus text), /healthz and /readyz."""

    # Comma list of client addresses or networks that may read /metrics without a token;
    # others need an API token that is not bound to one list.
    trusted: str = "127.0.0.1,::1"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    # "text" (one readable line per record) or "json" (one JSON object per line).
    format: str = "text"


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
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    subscriptions: SubscriptionsConfig = field(default_factory=SubscriptionsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
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
    "spool": SpoolConfig,
    "outbound": OutboundConfig,
    "bounces": BouncesConfig,
    "dkim": DkimConfig,
    "moderation": ModerationConfig,
    "subscriptions": SubscriptionsConfig,
    "api": ApiConfig,
    "metrics": MetricsConfig,
    "logging": LoggingConfig,
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
    if config.digest.weekly_day not in WEEKDAYS:
        raise ConfigError(f"{where}: [digest] weekly_day must be one of {', '.join(WEEKDAYS)}")
    _check_timezone(where, config.digest.timezone)
    if config.digest.misfire_grace <= 0 or config.digest.max_post_chars < 100:
        raise ConfigError(f"{where}: [digest] misfire_grace must be positive and max_post_chars at least 100")
    if "@" in config.site.domain or not config.site.domain:
        raise ConfigError(f"{where}: [site] domain must be a bare domain like lists.example.org")
    out = config.outbound
    if not 0 < out.retry_base <= out.retry_max:
        raise ConfigError(f"{where}: [outbound] retry_base must be positive and at most retry_max")
    if min(out.lifetime_days, out.lease, out.poll_interval, out.claim_batch, out.unrecorded) <= 0:
        raise ConfigError(
            f"{where}: [outbound] lifetime_days, lease, poll_interval, claim_batch, unrecorded must be > 0"
        )
    if config.relay.max_connections < 1 or config.relay.messages_per_connection < 1:
        raise ConfigError(f"{where}: [relay] max_connections and messages_per_connection must be at least 1")
    if config.relay.timeout <= 0 or config.relay.idle_timeout <= 0:
        raise ConfigError(f"{where}: [relay] timeout and idle_timeout must be positive")
    if config.relay.starttls and config.relay.tls:
        raise ConfigError(f"{where}: [relay] starttls and tls exclude each other; pick one")
    if config.spool.keep_days < 1:
        raise ConfigError(f"{where}: [spool] keep_days must be at least 1")
    if not 0 <= config.web.port <= 65535:
        raise ConfigError(f"{where}: [web] port {config.web.port} is not a TCP port")
    for key in ("topics_per_page", "posts_per_page", "form_limit", "signin_per_address"):
        if not 1 <= getattr(config.web, key) <= 1000:
            raise ConfigError(f"{where}: [web] {key} must be 1–1000")
    if not 1 <= config.web.signin_minutes <= 1440 or config.web.session_days <= 0:
        raise ConfigError(f"{where}: [web] signin_minutes must be 1–1440 and session_days positive")
    b = config.bounces
    if b.threshold <= 0 or b.hard_score <= 0 or b.soft_score < 0 or b.stale_days <= 0:
        raise ConfigError(f"{where}: [bounces] threshold, hard_score, stale_days must be positive")
    if b.warnings < 0 or b.warning_interval_days <= 0 or b.housekeeping_interval <= 0:
        raise ConfigError(
            f"{where}: [bounces] warnings must be 0 or more, "
            "warning_interval_days and housekeeping_interval positive"
        )
    if config.moderation.held_expire_days <= 0 or config.moderation.token_days < 1:
        raise ConfigError(f"{where}: [moderation] held_expire_days and token_days must be positive")
    subs = config.subscriptions
    if subs.confirm_days <= 0 or subs.unsubscribe_link_days < 1:
        raise ConfigError(f"{where}: [subscriptions] confirm_days and unsubscribe_link_days must be positive")
    for key in ("confirmations_per_day", "answers_per_day", "max_command_lines"):
        if not 1 <= getattr(subs, key) <= 1000:
            raise ConfigError(f"{where}: [subscriptions] {key} must be 1–1000")
    if config.processing.max_attempts < 1:
        raise ConfigError(f"{where}: [processing] max_attempts must be at least 1")
    api = config.api
    if api.max_body < 1024 or api.rate_limit < 1 or api.rate_window <= 0:
        raise ConfigError(
            f"{where}: [api] max_body must be at least 1024, rate_limit and rate_window positive"
        )
    if not 1 <= api.page_size <= api.max_page_size <= 100_000:
        raise ConfigError(f"{where}: [api] page_size must be 1–max_page_size, max_page_size at most 100000")
    _check_networks(f"{where}: [metrics] trusted", config.metrics.trusted)
    if config.logging.format not in ("text", "json"):
        raise ConfigError(f"{where}: [logging] format must be text or json")


def _check_networks(where: str, text: str) -> None:
    import ipaddress

    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ConfigError(f"{where}: {part!r} is not an address or network") from None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _check_timezone(where: str, name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: [digest] timezone {name!r} is not a known time zone") from None


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
    return in_folder(from_mapping(data, str(file)), file.resolve().parent)


def in_folder(config: Config, folder: Path) -> Config:
    """``config`` with its relative paths made absolute from ``folder`` (the config file's)."""
    return dataclasses.replace(
        config,
        database=dataclasses.replace(config.database, url=_sqlite_in(config.database.url, folder)),
        outbound=dataclasses.replace(config.outbound, templates=_path_in(config.outbound.templates, folder)),
        dkim=dataclasses.replace(config.dkim, key_file=_path_in(config.dkim.key_file, folder)),
    )


def _path_in(path: str, folder: Path) -> str:
    if not path:
        return path
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else folder / expanded)


def _sqlite_in(url: str, folder: Path) -> str:
    """A SQLite URL whose file is named relative to ``folder``; other URLs as they are."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # the database layer names the problem
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return url
    return parsed.set(database=_path_in(name, folder)).render_as_string(hide_password=False)
