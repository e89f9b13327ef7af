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
- ingest position, as Kafka assigns it: rows arrive in row-number order, so
  ``received_at`` grows with the row number (the inverse of the arrival-time
  distribution above, a piecewise-linear curve computed here), partition = n % 3 and
  offset = n / 3 follow arrival within each partition, and ``occurred_at`` is up to
  5 s before ``received_at``. (An earlier version drew times independently of the row
  number, so offsets ran back and forth in time — no broker does that — which made the
  feed's first page read parts of every month.)
"""

from __future__ import annotations

import itertools
import random
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


BURSTS = 50
BURST_MS = 600_000
BURST_SHARE = 0.2


def arrival_curve(span_ms: int, *, seed: int = 8) -> tuple[list[float], list[int]]:
    """Breakpoints ``(quantiles, ms)`` of the arrival-time distribution's CDF over ``span_ms``.

    Density: ``1 - BURST_SHARE`` of the rows uniform over the span, ``BURST_SHARE`` split
    evenly over ``BURSTS`` bursts of ``BURST_MS`` (overlapping bursts add up). Between
    breakpoints the CDF is linear, so row quantile -> time is an exact linear interpolation.
    """
    rng = random.Random(seed)
    burst_ms = min(BURST_MS, span_ms)
    starts = [rng.randrange(0, span_ms - burst_ms + 1) for _ in range(BURSTS)]
    points = sorted({0, span_ms, *starts, *(s + burst_ms for s in starts)})
    base = (1 - BURST_SHARE) / span_ms
    per_burst = BURST_SHARE / BURSTS / burst_ms
    cdf = [0.0]
    for a, b in itertools.pairwise(points):
        covering = sum(1 for s in starts if s <= a and b <= s + burst_ms)
        cdf.append(cdf[-1] + (b - a) * (base + covering * per_burst))
    return [q / cdf[-1] for q in cdf], points


def _u(salt: int) -> str:
    """A uniform [0, 1) draw per row, independent per salt."""
    return f"(cityHash64(number, {salt}) % 1000000000) / 1e9"


def select_sql(ds: Dataset, start: int, count: int) -> str:
    since, end = ds.window
    span_ms = int((end - since).total_seconds() * 1000)
    since_ms = int(since.timestamp() * 1000)
    actions = "[" + ", ".join(f"'{a}'" for a in ACTIONS) + "]"
    categories = "[" + ", ".join(f"'{categorize(a)}'" for a in ACTIONS) + "]"
    tenant = (
        f"'{ds.single_tenant}'"
        if ds.single_tenant
        else "concat('tenant-', leftPad(toString(t_rank), 4, '0'))"
    )
    # Arrival time = the arrival CDF's inverse at the row's quantile (linear between breakpoints).
    qs, ts = arrival_curve(span_ms)
    q = f"((number - {ds.first_number} + 0.5) / {ds.rows})"
    curve = f"[{', '.join(repr(v) for v in qs)}] AS qs, [{', '.join(str(t) for t in ts)}] AS ts"
    arrival_ms = (
        f"toInt64({since_ms} + ts[i - 1] + ({q} - qs[i - 1]) * (ts[i] - ts[i - 1]) / (qs[i] - qs[i - 1]))"
    )
    values = {
        "event_id": "generateUUIDv4(number)",
        "tenant_id": tenant,
        "occurred_at": f"fromUnixTimestamp64Milli(arrival_ms - toInt64({_u(10)} * 5000), 'UTC')",
        "received_at": "fromUnixTimestamp64Milli(arrival_ms, 'UTC')",
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
        "content_hash": "sipHash128(number)",
        "ingest_channel": "'kafka'",
        "ingest_key_id": "''",
    }
    assert tuple(values) == COLUMNS, "datagen must fill every stored column, in order"
    select = ",\n  ".join(f"{expr} AS {name}" for name, expr in values.items())
    return (
        f"SELECT\n  {select}\nFROM (\n"  # noqa: S608 - generated from constants only
        f"  SELECT number,\n"
        f"    toUInt32(floor(exp({_u(1)} * log({ds.tenants} + 1)))) - 1 AS t_rank,\n"
        f"    toUInt32(floor(exp({_u(2)} * log({ds.actors} + 1)))) - 1 AS actor,\n"
        f"    toUInt8(1 + least(19, floor(pow({_u(4)}, 2) * 20))) AS a_idx,\n"
        f"    {_u(13)} < 0.05 AS failed,\n"
        f"    {curve},\n"
        f"    arrayFirstIndex(x -> x > {q}, qs) AS i,\n"
        f"    {arrival_ms} AS arrival_ms\n"
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
