"""Realistic, deterministic audit events for demos, tests and benchmarks.

Usage::

    from auditstream.demo.generator import generate_events

    for event in generate_events(1000, tenants=["acme", "globex"], seed=7):
        ...  # plain dicts, valid under the v1 contract, without event_id

The events follow what audit-log products record (scan lifecycle, logins and
lockouts, password changes, user and RBAC changes, API keys, configuration
updates, exports), with coherent state per tenant: a scan is initiated, updated
or deleted only after it exists; a run of failed logins may end in a lockout;
a key is rotated or revoked only after it was created. Some ``details`` carry a
secret-looking key (``token``, ``authorization``) and some ``changes`` a
password field, so that redaction has something to show.

Determinism: the same ``seed``, ``tenants``, ``start`` and ``end`` give the
same events. With the default window (the last 3 days until now) only the time
anchor moves. ``event_id`` is deliberately absent: the producer assigns a
fresh UUIDv7, so running a demo twice does not produce "duplicates" that the
pipeline would drop.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

DEFAULT_WINDOW = timedelta(days=3)

# Resource names from the product documentation's example events, then more of the same kind.
SEED_SCAN_NAMES = (
    "Azure Cloud Workload – Complete Vulnerability Assessment",
    "test-credit-2",
    "test-port",
    "test-credit-activity-asset",
    "fzdxgchvjbklm",
)
MORE_SCAN_NAMES = (
    "AWS Production – External Perimeter",
    "Weekly PCI Internal Scan",
    "GCP Kubernetes Nodes – CIS Benchmark",
    "Office Network Discovery",
    "Web App – OWASP Top 10",
    "Quarterly Credentialed Scan – Windows Servers",
    "staging-api-auth-check",
)
FIRST_NAMES = (
    "Ana", "Ben", "Chen", "Divya", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Julia",
    "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Okafor", "Müller", "Nakamura", "Kowalski", "Haddad", "Iyer", "Larsen", "Moreau",
    "Novak", "Petrov", "Rossi", "Santos", "Tanaka", "Walsh", "Zhang",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
API_USER_AGENTS = (
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Go-http-client/2.0",
    "terraform-provider-deeptraq/1.8.2",
)
ROLES = ("reader", "analyst", "scan_operator", "exporter", "admin")
CONFIG_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("session.timeout_minutes", ("15", "30", "60", "120")),
    ("auth.mfa_required", ("false", "true")),
    ("auth.password_min_length", ("8", "12", "14", "16")),
    ("auth.lockout_threshold", ("3", "5", "10")),
    ("scan.max_concurrent", ("2", "4", "8")),
    ("audit.retention_days", ("120", "365", "730")),
    ("notifications.email", ("off", "digest", "immediate")),
    ("sso.provider", ("none", "okta", "entra_id", "google")),
    ("smtp.password", ("********",)),  # a secret-looking change field: redacted downstream
)
LOGIN_FAILURE_REASONS = ("invalid password", "unknown user", "MFA code rejected", "expired password")
TIMEZONES = (
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=1)),
)


@dataclass
class _Tenant:
    """The state one tenant's events are drawn from, so that sequences make sense."""

    name: str
    tz: timezone
    users: list[dict[str, str]]
    service: dict[str, str]
    api_key: dict[str, str]
    system: dict[str, str]
    scans: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    keys: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)


class _Generator:
    def __init__(self, tenants: Sequence[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.tenants = [self._make_tenant(name) for name in tenants]
        # Action scenarios and their relative frequency (logins and scan runs dominate real logs).
        self.scenarios: list[tuple[Callable[[_Tenant], list[dict[str, Any]]], int]] = [
            (self.login, 16),
            (self.logout, 8),
            (self.login_failures, 2),
            (self.scan_initiated, 14),
            (self.scan_created, 6),
            (self.scan_updated, 6),
            (self.scan_deleted, 2),
            (self.password_changed, 3),
            (self.user_admin, 5),
            (self.role_change, 4),
            (self.key_change, 5),
            (self.config_updated, 5),
            (self.export_created, 2),
        ]

    # -- helpers -------------------------------------------------------------------

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 4):0{n}x}"

    def ip(self, public: bool = True) -> str:
        r = self.rng
        if not public:
            return f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        if r.random() < 0.25:  # documentation prefix 2001:db8::/32 keeps the demo data obviously fictional
            return str(ipaddress.IPv6Address((0x20010DB8 << 96) | r.getrandbits(64)))
        prefix = r.choice(("203.0.113", "198.51.100", "192.0.2"))
        return f"{prefix}.{r.randint(1, 254)}"

    def _make_tenant(self, name: str) -> _Tenant:
        r = self.rng
        domain = f"{name.lower().replace('_', '-')}.example"
        users = []
        for first, last in r.sample([(f, la) for f in FIRST_NAMES for la in LAST_NAMES], r.randint(4, 8)):
            login = f"{first}.{last}".lower().replace("ü", "ue")
            users.append(
                {
                    "id": f"usr_{self.hex(8)}",
                    "type": "user",
                    "name": f"{first} {last}",
                    "email": f"{login}@{domain}",
                    "ip": self.ip(),
                    "user_agent": r.choice(USER_AGENTS),
                }
            )
        tenant = _Tenant(
            name=name,
            tz=r.choice(TIMEZONES),
            users=users,
            service={
                "id": "svc_scan_scheduler",
                "type": "service",
                "name": "scan-scheduler",
                "ip": self.ip(False),
            },
            api_key={
                "id": f"key_{self.hex(12)}",
                "type": "api_key",
                "name": "ci-pipeline",
                "ip": self.ip(),
                "user_agent": r.choice(API_USER_AGENTS),
            },
            system={"id": "system", "type": "system", "name": "auth-policy"},
        )
        for scan_name in (*SEED_SCAN_NAMES, *r.sample(MORE_SCAN_NAMES, 3)):
            tenant.scans.append((f"scn_{self.hex(8)}", scan_name))
        tenant.keys = [f"key_{self.hex(12)}" for _ in range(2)]
        tenant.config = {name: values[0] for name, values in CONFIG_FIELDS}
        return tenant

    def user(self, t: _Tenant) -> dict[str, str]:
        u = dict(self.rng.choice(t.users))
        if self.rng.random() < 0.1:  # roaming: same user, another address
            u["ip"] = self.ip()
        return u

    def admin_actor(self, t: _Tenant) -> dict[str, str]:
        return self.user(t) if self.rng.random() < 0.85 else dict(t.api_key)

    def source(self, service: str) -> dict[str, str]:
        return {
            "service": service,
            "host": f"{service}-{self.rng.randint(0, 3)}.prod.internal",
            "request_id": f"req_{self.hex(16)}",
        }

    def event(
        self,
        t: _Tenant,
        action: str,
        actor: dict[str, str],
        service: str,
        resource: dict[str, str] | None = None,
        *,
        failure: str | None = None,
        details: dict[str, str] | None = None,
        changes: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "tenant_id": t.name,
            "action": action,
            "actor": actor,
            "source": self.source(service),
            "outcome": "failure" if failure else "success",
        }
        if failure:
            ev["reason"] = failure
        if resource:
            ev["resource"] = resource
        if details:
            ev["details"] = details
        if changes:
            ev["changes"] = changes
        return ev

    def maybe_fail(self, rate: float, reasons: Sequence[str]) -> str | None:
        return self.rng.choice(reasons) if self.rng.random() < rate else None

    # -- scenarios ---------------------------------------------------------------------

    def login(self, t: _Tenant) -> list[dict[str, Any]]:
        u = self.user(t)
        method = self.rng.choice(("password", "sso", "sso", "password+totp"))
        details = {"method": method}
        if method == "sso" and self.rng.random() < 0.3:
            details["id_token"] = f"eyJ{self.hex(24)}"  # secret-looking: must be redacted downstream
        return [self.event(t, "user.login", u, "auth-service", _user_resource(u), details=details)]

    def logout(self, t: _Tenant) -> list[dict[str, Any]]:
        u = self.user(t)
        reason = self.rng.choice(("user", "user", "session_timeout"))
        return [
            self.event(t, "user.logout", u, "auth-service", _user_resource(u), details={"trigger": reason})
        ]

    def login_failures(self, t: _Tenant) -> list[dict[str, Any]]:
        """A burst of failed logins from one address; sometimes it ends in a lockout."""
        target = self.user(t)
        attacker = self.rng.random() < 0.4
        ip = self.ip() if attacker else target["ip"]
        actor = {**target, "ip": ip}
        if attacker:
            actor["user_agent"] = self.rng.choice(API_USER_AGENTS)
        count = self.rng.randint(1, 6)
        events = [
            self.event(
                t,
                "user.login_failed",
                actor,
                "auth-service",
                _user_resource(target),
                failure=self.rng.choice(LOGIN_FAILURE_REASONS),
                details={"attempt": str(i + 1), "method": "password"},
            )
            for i in range(count)
        ]
        if count >= 5:
            events.append(
                self.event(
                    t,
                    "user.locked_out",
                    dict(t.system),
                    "auth-service",
                    _user_resource(target),
                    details={"failed_attempts": str(count), "lock_minutes": "30", "source_ip": ip},
                )
            )
        return events

    def scan_initiated(self, t: _Tenant) -> list[dict[str, Any]]:
        if not t.scans:
            return self.scan_created(t)
        scan_id, name = self.rng.choice(t.scans)
        scheduled = self.rng.random() < 0.5
        actor = dict(t.service) if scheduled else self.user(t)
        failure = self.maybe_fail(
            0.05, ("target unreachable", "credentials rejected by target", "scanner busy")
        )
        details = {"trigger": "schedule" if scheduled else "manual", "targets": str(self.rng.randint(1, 250))}
        resource = {"type": "scan", "id": scan_id, "name": name}
        return [
            self.event(
                t, "scan.initiated", actor, "scan-orchestrator", resource, failure=failure, details=details
            )
        ]

    def scan_created(self, t: _Tenant) -> list[dict[str, Any]]:
        name = self.rng.choice((*SEED_SCAN_NAMES, *MORE_SCAN_NAMES))
        if self.rng.random() < 0.5:
            name = f"{name} ({self.rng.randint(2, 9)})" if self.rng.random() < 0.5 else f"test-{self.hex(4)}"
        scan_id = f"scn_{self.hex(8)}"
        t.scans.append((scan_id, name))
        details = {
            "profile": self.rng.choice(("full", "discovery", "credentialed", "web")),
            "schedule": "weekly",
        }
        resource = {"type": "scan", "id": scan_id, "name": name}
        return [
            self.event(t, "scan.created", self.admin_actor(t), "scan-orchestrator", resource, details=details)
        ]

    def scan_updated(self, t: _Tenant) -> list[dict[str, Any]]:
        if not t.scans:
            return self.scan_created(t)
        scan_id, name = self.rng.choice(t.scans)
        field_name, values = self.rng.choice(
            (
                ("schedule", ("daily", "weekly", "monthly")),
                ("profile", ("full", "discovery", "credentialed")),
                ("targets", ("10.0.0.0/24", "10.0.0.0/16", "app.internal")),
            )
        )
        old, new = self.rng.sample(values, 2)
        resource = {"type": "scan", "id": scan_id, "name": name}
        changes = [{"field": field_name, "old": old, "new": new}]
        return [self.event(t, "scan.updated", self.user(t), "scan-orchestrator", resource, changes=changes)]

    def scan_deleted(self, t: _Tenant) -> list[dict[str, Any]]:
        if len(t.scans) <= 3:  # keep a few scans around to run
            return self.scan_created(t)
        scan_id, name = t.scans.pop(self.rng.randrange(len(t.scans)))
        resource = {"type": "scan", "id": scan_id, "name": name}
        return [self.event(t, "scan.deleted", self.user(t), "scan-orchestrator", resource)]

    def password_changed(self, t: _Tenant) -> list[dict[str, Any]]:
        u = self.user(t)
        failure = self.maybe_fail(0.1, ("password does not meet policy", "password reused"))
        trigger = self.rng.choice(("self_service", "self_service", "admin_reset", "expired"))
        return [
            self.event(
                t,
                "user.password_changed",
                u,
                "auth-service",
                _user_resource(u),
                failure=failure,
                details={"trigger": trigger},
            )
        ]

    def user_admin(self, t: _Tenant) -> list[dict[str, Any]]:
        actor = self.admin_actor(t)
        kind = self.rng.choices(("created", "updated", "deleted"), weights=(4, 4, 1))[0]
        if kind == "created" or len(t.users) <= 3:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            new = {
                "id": f"usr_{self.hex(8)}",
                "type": "user",
                "name": f"{first} {last}",
                "email": f"{first}.{last}@{t.name.lower()}.example".lower().replace("ü", "ue"),
                "ip": self.ip(),
                "user_agent": self.rng.choice(USER_AGENTS),
            }
            t.users.append(new)
            role = self.rng.choice(ROLES[:3])
            return [
                self.event(
                    t,
                    "user.created",
                    actor,
                    "admin-console",
                    _user_resource(new),
                    details={"initial_role": role},
                )
            ]
        if kind == "updated":
            target = self.rng.choice(t.users)
            changes = [{"field": "display_name", "old": target["name"], "new": target["name"].upper()}]
            if self.rng.random() < 0.3:
                changes.append({"field": "mfa_enabled", "old": "false", "new": "true"})
            return [
                self.event(t, "user.updated", actor, "admin-console", _user_resource(target), changes=changes)
            ]
        target = t.users.pop(self.rng.randrange(len(t.users)))
        return [self.event(t, "user.deleted", actor, "admin-console", _user_resource(target))]

    def role_change(self, t: _Tenant) -> list[dict[str, Any]]:
        actor = self.admin_actor(t)
        target = self.rng.choice(t.users)
        role = self.rng.choice(ROLES)
        action = "role.assigned" if self.rng.random() < 0.7 else "role.revoked"
        failure = self.maybe_fail(0.08, ("permission denied: requires admin role",))
        details = {
            "role": role,
            "user_id": target["id"],
            "scope": self.rng.choice(("tenant", "client:north", "client:emea")),
        }
        resource = {"type": "role", "id": f"role_{role}", "name": role}
        return [self.event(t, action, actor, "admin-console", resource, failure=failure, details=details)]

    def key_change(self, t: _Tenant) -> list[dict[str, Any]]:
        actor = self.user(t)
        kind = self.rng.choices(("created", "rotated", "revoked"), weights=(3, 3, 1))[0]
        if kind == "created" or len(t.keys) <= 1:
            key_id = f"key_{self.hex(12)}"
            t.keys.append(key_id)
            details = {
                "scopes": self.rng.choice(("scans:read", "scans:write", "audit:read")),
                "expires_in_days": "90",
            }
            if self.rng.random() < 0.4:
                details["token"] = (
                    f"dtq_live_{self.hex(32)}"  # a secret leaked into details: redacted downstream
                )
            resource = {
                "type": "api_key",
                "id": key_id,
                "name": self.rng.choice(("ci-pipeline", "siem-pull", "backup")),
            }
            return [self.event(t, "key.created", actor, "key-manager", resource, details=details)]
        if kind == "rotated":
            key_id = self.rng.choice(t.keys)
            details = {"reason": self.rng.choice(("scheduled", "suspected exposure"))}
            if self.rng.random() < 0.3:
                details["authorization"] = f"Bearer {self.hex(40)}"
            return [
                self.event(
                    t, "key.rotated", actor, "key-manager", {"type": "api_key", "id": key_id}, details=details
                )
            ]
        key_id = t.keys.pop(self.rng.randrange(len(t.keys)))
        return [self.event(t, "key.revoked", actor, "key-manager", {"type": "api_key", "id": key_id})]

    def config_updated(self, t: _Tenant) -> list[dict[str, Any]]:
        changes = []
        for field_name, values in self.rng.sample(CONFIG_FIELDS, self.rng.randint(1, 3)):
            old = t.config[field_name]
            new = self.rng.choice([v for v in values if v != old] or list(values))
            t.config[field_name] = new
            changes.append({"field": field_name, "old": old, "new": new})
        section = changes[0]["field"].split(".")[0]
        failure = self.maybe_fail(0.04, ("validation failed: value out of range",))
        resource = {"type": "config", "id": f"{t.name}/{section}", "name": section}
        return [
            self.event(
                t,
                "config.updated",
                self.admin_actor(t),
                "config-service",
                resource,
                failure=failure,
                changes=changes,
            )
        ]

    def export_created(self, t: _Tenant) -> list[dict[str, Any]]:
        fmt = self.rng.choice(("csv", "json", "ndjson"))
        export_id = f"exp_{self.hex(10)}"
        name = self.rng.choice(
            ("failed logins last week", "Q1 config changes", "monthly evidence", "scan history")
        )
        details = {
            "format": fmt,
            "filters": self.rng.choice(("action=user.login_failed", "action=config.*", "-")),
        }
        resource = {"type": "export", "id": export_id, "name": name}
        return [self.event(t, "export.created", self.user(t), "export-worker", resource, details=details)]

    # -- the stream ---------------------------------------------------------------------

    def scenario(self) -> list[dict[str, Any]]:
        tenant = self.rng.choice(self.tenants)
        scenarios, weights = zip(*self.scenarios, strict=True)
        return self.rng.choices(scenarios, weights=weights)[0](tenant)


def _user_resource(user: dict[str, str]) -> dict[str, str]:
    return {"type": "user", "id": user["id"], "name": user["email"]}


def _format_time(moment: datetime, tz: timezone) -> str:
    text = moment.astimezone(tz).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def generate_events(
    n: int,
    *,
    tenants: Sequence[str],
    seed: int = 0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` valid v1 events (dicts) spread over ``[start, end]`` in roughly time order.

    Defaults: ``end`` = now, ``start`` = ``end`` - 3 days. ``start``/``end``
    must be timezone-aware; ``end`` must not be more than 5 minutes in the
    future (the contract would reject such events). Each tenant writes its
    timestamps in its own UTC offset (as the product docs show, e.g. +05:30);
    about 2% of the events are "late" (up to 10 minutes older than their
    neighbours), as real producers are.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not tenants:
        raise ValueError("at least one tenant is needed")
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end must not be before start")
    span = (end - start).total_seconds()
    gen = _Generator(tenants, seed)
    by_name = {t.name: t for t in gen.tenants}
    produced = 0
    while produced < n:
        for ev in gen.scenario():
            if produced >= n:
                break
            # Evenly spread slots with jitter inside each slot: lazy (no list of n times) and ordered.
            offset = span * (produced + gen.rng.random()) / n
            if gen.rng.random() < 0.02:
                offset = max(0.0, offset - gen.rng.uniform(0, 600))
            moment = start + timedelta(seconds=offset)
            ev["occurred_at"] = _format_time(moment, by_name[ev["tenant_id"]].tz)
            produced += 1
            yield ev
