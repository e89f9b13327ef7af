"""All configuration, in one pydantic-settings class.

Every field can be set through an ``AUDITSTREAM_``-prefixed environment variable
(``AUDITSTREAM_KAFKA_BOOTSTRAP``, ``AUDITSTREAM_CLICKHOUSE_DSN``, ...) or a
``.env`` file. Defaults are the embedded developer setup: a broker on
127.0.0.1:9092, ClickHouse through chDB under ``./.data/clickhouse``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The repository checkout; schemas/ lives beside services/.
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDITSTREAM_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(Path(".data"), description="Local state: chDB files, API keys, spool.")
    schemas_dir: Path = Field(REPO_ROOT / "schemas", description="JSON Schema and ClickHouse migrations.")

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "audit.events"
    dlq_topic: str = "audit.events.dlq"
    topic_partitions: int = Field(3, ge=1)
    consumer_group: str = "auditstream-processor"
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        description="max.message.bytes of the input topic (set when it is created) and the fetch size.",
    )

    # --- ClickHouse ----------------------------------------------------------
    clickhouse_dsn: str | None = Field(
        None,
        description="chdb:///abs/path (embedded) or http://user:pass@host:8123. Default: chDB in data_dir.",
    )
    clickhouse_database: str = "auditstream"
    retention_days: int = Field(365, ge=1)

    # --- processor -----------------------------------------------------------
    # 20,000: ClickHouse's cost per inserted row falls with the block size (measured in chDB,
    # same rows: 15.6 µs/row in blocks of 5,000, 12.1 µs in blocks of 20,000), and fewer,
    # larger parts are what MergeTree wants. Below ~40k events/s batches close on time.
    batch_max_events: int = Field(20000, ge=1, description="A batch closes at this many events ...")
    # Half a second: at moderate rates batches close on time, and the produce-to-queryable
    # p99 bar (2 s) needs the wait for a batch to close well under it.
    batch_max_seconds: float = Field(0.5, gt=0, description="... or after this long, whichever first.")
    # Two: while one batch is being written (ClickHouse works mostly outside the GIL), the
    # next is fetched and validated; writes still happen one batch at a time, in order.
    batches_in_flight: int = Field(2, ge=1, le=8, description="Batches validated ahead of the write.")
    write_retry_initial_seconds: float = Field(0.2, gt=0)
    write_retry_max_seconds: float = Field(10.0, gt=0)
    gc_tuning: bool = Field(
        True, description="Freeze start-up objects and collect less often (see processor/gc_tuning.py)."
    )

    # --- API -----------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_window_days: int = Field(92, ge=1, description="Longest time range one query may cover.")
    keys_path: Path | None = Field(
        None, description="SQLite file of hashed API keys. Default: data_dir/keys.sqlite3"
    )
    # NoDecode: the variable is a plain comma-separated list, not JSON.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed."
        " Empty: the TCP peer is the client.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        from auditstream.api.proxies import parse_networks  # stdlib-only module

        entries = value.split(",") if isinstance(value, str) else value
        parse_networks(entries)  # refuse a typo at start-up, naming it
        return [e.strip() for e in entries if e.strip()]

    # --- web viewer ----------------------------------------------------------
    web_session_hours: float = Field(
        8.0,
        gt=0,
        le=24 * 7,
        description="A viewer sign-in lasts this long (the key is re-checked on each request).",
    )

    # --- logging -------------------------------------------------------------
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")

    @cached_property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @cached_property
    def resolved_keys_path(self) -> Path:
        return self.keys_path or self.data_dir / "keys.sqlite3"

    @property
    def embedded(self) -> bool:
        """True when ClickHouse runs in-process (chDB): one engine per process."""
        return self.resolved_clickhouse_dsn.startswith("chdb:")


def get_settings() -> Settings:
    return Settings()
