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

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from auditstream.private_fs import private_dir

# The repository checkout, for the tools that only run from one (tests, `make bench`).
# Nothing at run time reads it: schemas ship inside the package (auditstream.resources).
REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDITSTREAM_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(Path(".data"), description="Local state: chDB files, API keys, spool.")
    schemas_dir: Path | None = Field(
        None,
        description="Folder with event/v1.json and clickhouse/NNNN_*.sql. Default: the copy in the package.",
    )

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "audit.events"
    dlq_topic: str = "audit.events.dlq"
    topic_partitions: int = Field(3, ge=1)
    # Production: 3 and 2 (README "Production: Kafka and ClickHouse clusters"); 1 broker: 1 and unset.
    topic_replication_factor: int = Field(1, ge=1, description="Replicas of each topic we create.")
    topic_min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of each topic we create (acks=all waits for this many)."
    )
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
    clickhouse_cluster: str | None = Field(
        None,
        description="Cluster name of remote_servers: migrations run ON CLUSTER with Replicated tables and "
        "Distributed ones sharded by tenant (store/cluster_ddl.py). Unset: one server or chDB.",
    )
    retention_days: int = Field(365, ge=1)

    # --- processor -----------------------------------------------------------
    # 50,000: ClickHouse's cost per inserted row falls with the block size (measured in chDB,
    # same rows: 15.6 µs/row in blocks of 5,000, 12.1 µs in blocks of 20,000), and fewer,
    # larger parts are what MergeTree wants: from 20,000 to 50,000 the processor's rate on
    # a backlog rose 25 % and its CPU per event fell 9-11 % (bench/RESULTS.md, stop 23). Below
    # ~100k events/s batches close on time (batch_max_seconds), so latency is unchanged.
    batch_max_events: int = Field(50000, ge=1, description="A batch closes at this many events ...")
    # The bound on a batch's memory when events are large (up to 64 KiB each): 64 MiB of
    # values is ~100,000 events of the usual ~650 bytes, so batch_max_events closes first.
    batch_max_bytes: int = Field(
        64 * 1024 * 1024, ge=65536, description="... or at this many bytes of message values ..."
    )
    # Half a second: the longest a batch waits for more events while the writer is busy;
    # the produce-to-queryable p99 bar (1 s) needs that wait well under it.
    batch_max_seconds: float = Field(0.5, gt=0, description="... or after this long, whichever first.")
    # Group commit (processor/fetcher.py): when no earlier batch is still being validated or
    # written, a batch closes once it is this old rather than waiting for batch_max_seconds.
    # Not 0: each insert writes parts (~30 ms of the engine whatever their size), and a
    # floor keeps a trickle of events from becoming an insert per event.
    batch_min_seconds: float = Field(
        0.1, ge=0, description="A batch closes early, once this old, when the writer is idle."
    )
    # Two: while one batch is being written (ClickHouse works mostly outside the GIL), the
    # next is fetched and validated; writes still happen one batch at a time, in order.
    batches_in_flight: int = Field(2, ge=1, le=8, description="Batches validated ahead of the write.")
    write_retry_initial_seconds: float = Field(0.2, gt=0)
    write_retry_max_seconds: float = Field(10.0, gt=0)
    gc_tuning: bool = Field(
        True, description="Freeze start-up objects and collect less often (see processor/gc_tuning.py)."
    )
    # CPython's own 5 ms by default. 1-2 ms raised the rate on a backlog by 5-13 % but made the
    # produce-to-queryable p99 at a fixed 20,000 ev/s worse in most rounds (processor/switch_interval.py).
    switch_interval_ms: float = Field(
        5.0,
        ge=0.1,
        le=100.0,
        description="The interpreter's thread switch interval while the processor runs (CPython: 5).",
    )

    # The Rust fast path (native/fastpath) when the installation has it; off, the msgspec one.
    # Both accept only what the pydantic model accepts (tests/events/test_fastpath.py).
    native_fastpath: bool = Field(
        True,
        description="Decode valid events with the native (Rust) fast path when it is built.",
    )

    # --- integrity of the log ----------------------------------------------------
    ingest_secret: SecretStr | None = Field(
        None,
        description=(
            "Signs the ingest-channel label (http + key id, internal) that the API and CLI put on"
            " what they publish, so the processor can trust it. Default: data_dir/ingest.secret,"
            " generated on first use; set the same value on every process of a split deployment."
        ),
    )

    # --- API -----------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str | None = Field(
        None,
        description="Where the CLI (query, export, tail) reaches the API. Default: http://{api_host}:{api_port}.",
    )
    max_window_days: int = Field(92, ge=1, description="Longest time range one query may cover.")
    # An export is one streamed query; this is how much of the stream one read takes,
    # i.e. about the size of each piece handed to the client (store/export.py). The
    # engine's own memory does not depend on it (bench/RESULTS.md, issue 12 stop 28).
    export_read_bytes: int = Field(
        1 << 20,
        ge=64 << 10,
        le=64 << 20,
        description="Bytes of an export's stream read at a time, about one piece sent to the client"
        " (64 KiB-64 MiB).",
    )
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

    # --- tamper evidence (integrity/) -----------------------------------------
    sealer_enabled: bool = Field(True, description="Run the Merkle sealer next to the processor.")
    sealer_duty: float = Field(
        0.1,
        gt=0,
        le=1,
        description="While events keep arriving, the sealer works at most this share of the time (it"
        " shares the process with the processor) and catches up at full speed once ingest pauses;"
        " 1: never yield.",
    )
    sealer_max_lag_seconds: float = Field(
        60.0,
        gt=0,
        description="The sealer stops yielding to ingest while a tenant's unsealed events are older than"
        " this: sustained ingest then costs more throughput, not an ever-growing lag.",
    )
    checkpoint_seconds: float = Field(
        60.0, gt=0, description="At most one signed checkpoint per tenant this often (when it got events)."
    )
    checkpoint_key_path: Path | None = Field(
        None,
        description="Ed25519 signer key (note format). Default: data_dir/checkpoint.key, made at start.",
    )
    # The API only verifies: it reads this file, never the signer key. A split deployment
    # keeps the signer key on the followers' own volume and this file on a shared one.
    checkpoint_public_key_path: Path | None = Field(
        None,
        description="Verifier key file, written by the sealer, read by the API. Default: the key path + .pub",
    )
    checkpoint_key_name: str = Field("auditstream", description="Key name in notes; also the origin prefix.")
    checkpoint_dir: Path | None = Field(
        None,
        description="Checkpoint files, one per tenant and day (WORM copies). Default: data_dir/checkpoints",
    )

    # --- alerts (services/auditstream/alerts) -------------------------------
    alerts_enabled: bool = Field(True, description="Run the alert evaluator beside the processor.")
    alerts_path: Path | None = Field(
        None, description="SQLite file of rules, alerts, window state. Default: data_dir/alerts.sqlite3"
    )
    allow_private_targets: bool = Field(
        False, description="Allow webhook targets on loopback/link-local/private addresses (SSRF guard off)."
    )
    alert_lateness_seconds: float = Field(
        300.0, ge=0, le=86400, description="Events this much older than a group's newest still count."
    )
    alert_poll_seconds: float = Field(0.2, gt=0, description="How often the evaluator looks for new events.")
    # 20,000: per page the evaluator commits every window state the page touched once, so
    # larger pages cost less per event; measured: 100 rules cost ~37% of ingest at 5,000
    # and ~2% at 20,000 (README, Alert rules).
    alert_page_size: int = Field(20000, ge=1, le=100_000, description="Stored events evaluated per step.")
    alert_delivery_timeout_seconds: float = Field(10.0, gt=0)
    alert_retry_initial_seconds: float = Field(
        1.0, gt=0, description="First retry delay (doubles, jittered)."
    )
    alert_retry_max_seconds: float = Field(300.0, gt=0)
    alert_give_up_seconds: float = Field(
        86400.0, gt=0, description="A delivery still failing this long after the alert is marked failed."
    )

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

    @cached_property
    def resolved_api_url(self) -> str:
        """``api_url``, else the address the API binds to (a wildcard bind means this machine)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.api_host, self.api_host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal in a URL
        return f"http://{host}:{self.api_port}"

    def prepare_data_dir(self) -> Path:
        """Create the data folder (and the embedded engine's folder) owner-only (0700)."""
        private_dir(self.data_dir)
        dsn = self.resolved_clickhouse_dsn
        folder = dsn[len("chdb://") :].split("?", 1)[0] if dsn.startswith("chdb://") else ""
        if folder.startswith("/"):
            private_dir(folder)
        return self.data_dir

    @cached_property
    def resolved_checkpoint_key_path(self) -> Path:
        return self.checkpoint_key_path or self.data_dir / "checkpoint.key"

    @cached_property
    def resolved_checkpoint_public_key_path(self) -> Path:
        key = self.resolved_checkpoint_key_path
        return self.checkpoint_public_key_path or key.with_name(key.name + ".pub")

    @cached_property
    def resolved_checkpoint_dir(self) -> Path:
        return self.checkpoint_dir or self.data_dir / "checkpoints"

    @cached_property
    def resolved_alerts_path(self) -> Path:
        return self.alerts_path or self.data_dir / "alerts.sqlite3"

    @property
    def embedded(self) -> bool:
        """True when ClickHouse runs in-process (chDB): one engine per process."""
        return self.resolved_clickhouse_dsn.startswith("chdb:")


def get_settings() -> Settings:
    return Settings()
