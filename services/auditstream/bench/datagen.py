"""Realistic stored events generated inside ClickHouse: ``INSERT ... SELECT`` from ``numbers()``.

Python never touches a row, so 10 million rows cost what the engine needs to write them.
Shared by the query and export benchmarks (and meant for issue 4's query-latency work).
Deterministic: every value is a hash of the row number and a salt.

Shape (why: query cost depends on skew, not on the mean):

- tenants: rank = floor(exp(U * ln(T+1))) - 1, a log-uniform (Zipf, s=1) rank, so
  ``tenant-0000`` holds ~11% of the rows with 500 tenants and most tenants are small;
  ``single_tenant`` puts every row in one tenant (export sizes must be exact);
- actors: the same Zipf law over ``actors`` per tenant (a few very active users, a long tail);
- time: 80% uniform over ``days``, 20% in 50 bursts of 10 minutes (incidents, scans);
- actions: 20 actions, the first ones most frequent; 5% failures with a reason;
- ingest position: partition = n % 3, offset = n / 3, received_at = occurred_at + up to 5 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from auditstream.events.catalog import categorize
from auditstream.events.stored import COLUMNS
from auditstream.store.client import validate_identifier

ACTIONS = (
    "user.login", "scan.initiated", "user.logout", "scan.completed", "scan.created", "config.updated",
    "user.login_failed", "scan.updated", "key.created", "user.password_changed", "role.assigned",
    "user.created", "export.created", "key.rotated", "scan.deleted", "user.updated", "role.revoked",
    "key.revoked", "user.locked_out", "user.deleted",
)  # fmt: skip
CHUNK_ROWS = 2_000_000


@dataclass(frozen=True)
class Dataset:
    rows: int
    tenants: int = 500
    actors: int = 2000
    days: int = 30
    end: datetime | None = None  # default: one minute ago (inside the API's default windows)
    single_tenant: str | None = None
    first_number: int = 0  # offsets the row numbers so two datasets in one table differ

    @property
    def window(self) -> tuple[datetime, datetime]:
        end = self.end or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        return end - timedelta(days=self.days), end


def _u(salt: int) -> str:
    """A uniform [0, 1) draw per row, independent per salt."""
    return f"(cityHash64(number, {salt}) % 1000000000) / 1e9"


def select_sql(ds: Dataset, start: int, count: int) -> str:
    since, end = ds.window
    span_ms = int((end - since).total_seconds() * 1000)
    end_ms = int(end.timestamp() * 1000)
    actions = "[" + ", ".join(f"'{a}'" for a in ACTIONS) + "]"
    categories = "[" + ", ".join(f"'{categorize(a)}'" for a in ACTIONS) + "]"
    tenant = (
        f"'{ds.single_tenant}'"
        if ds.single_tenant
        else "concat('tenant-', leftPad(toString(t_rank), 4, '0'))"
    )
    # Burst starts are hashes of the burst number; a burst row lands within 10 minutes after it.
    burst_ms = f"toInt64((cityHash64(intDiv(cityHash64(number, 7) % 50, 1), 8) % {span_ms}))"
    offset_ms = f"if({_u(6)} < 0.2, {burst_ms} + toInt64({_u(9)} * 600000), toInt64({_u(5)} * {span_ms}))"
    values = {
        "event_id": "generateUUIDv4(number)",
        "tenant_id": tenant,
        "occurred_at": f"fromUnixTimestamp64Milli(toInt64({end_ms} - least({span_ms}, {offset_ms})), 'UTC')",
        "received_at": f"fromUnixTimestamp64Milli(toInt64({end_ms} - least({span_ms}, {offset_ms}) + "
        f"toInt64({_u(10)} * 5000)), 'UTC')",
        "action": f"{actions}[a_idx]",
        "category": f"{categories}[a_idx]",
        "severity": "if(failed, 'medium', 'info')",
        "outcome": "if(failed, 'failure', 'success')",
        "reason": "if(failed, 'invalid password', '')",
        "actor_id": "concat('usr_', toString(t_rank), '_', toString(actor))",
        "actor_type": "if(actor % 10 = 0, 'service', 'user')",
        "actor_name": "concat('User ', toString(actor))",
        "actor_email": "concat('user', toString(actor), '@tenant', toString(t_rank), '.example')",
        "actor_ip": "IPv4NumToString(toUInt32(3405803776 + cityHash64(actor, 3) % 256))",
        "actor_user_agent": "'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0'",
        "resource_type": "if(startsWith(action, 'scan'), 'scan', 'user')",
        "resource_id": "concat('scn_', toString(cityHash64(number, 11) % 5000))",
        "resource_name": "concat('Weekly PCI Internal Scan ', toString(cityHash64(number, 11) % 5000))",
        "source_service": "'auth-service'",
        "source_host": "concat('auth-service-', toString(number % 4), '.prod.internal')",
        "source_request_id": "concat('req_', hex(cityHash64(number, 12)))",
        "changes": "if(action = 'config.updated', "
        '\'[{"field":"session.timeout_minutes","old":"15","new":"30"}]\', \'\')',
        "details": "map('method', if(number % 3 = 0, 'sso', 'password'), 'region', 'eu-west-1')",
        "schema_version": "'1'",
        "kafka_topic": "'audit.events'",
        "kafka_partition": "toUInt16(number % 3)",
        "kafka_offset": "intDiv(number, 3)",
    }
    assert tuple(values) == COLUMNS, "datagen must fill every stored column, in order"
    select = ",\n  ".join(f"{expr} AS {name}" for name, expr in values.items())
    return (
        f"SELECT\n  {select}\nFROM (\n"  # noqa: S608 - generated from constants only
        f"  SELECT number,\n"
        f"    toUInt32(floor(exp({_u(1)} * log({ds.tenants} + 1)))) - 1 AS t_rank,\n"
        f"    toUInt32(floor(exp({_u(2)} * log({ds.actors} + 1)))) - 1 AS actor,\n"
        f"    toUInt8(1 + least(19, floor(pow({_u(4)}, 2) * 20))) AS a_idx,\n"
        f"    {_u(13)} < 0.05 AS failed\n"
        f"  FROM numbers({start}, {count}))"
    )


def generate(client: Client, database: str, ds: Dataset) -> int:
    """Insert ``ds.rows`` rows into ``database.audit_events`` in chunks; returns the rows inserted."""
    database = validate_identifier(database)
    cols = ", ".join(COLUMNS)
    done = 0
    while done < ds.rows:
        count = min(CHUNK_ROWS, ds.rows - done)
        sql = select_sql(ds, ds.first_number + done, count)
        client.command(f"INSERT INTO {database}.audit_events ({cols}) {sql}")
        done += count
    return done
