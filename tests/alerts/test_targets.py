"""SSRF guard: every resolved address checked, the attempt pinned to it (DNS rebinding).

Pure logic with an injected resolver, then real deliveries (DeliveryWorker, SQLite file, a
real HTTP receiver on 127.0.0.1) to ``localhost``: refused when private targets are not
allowed, with the reason in the delivery log; delivered when they are.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from auditstream.alerts.delivery import DeliveryWorker
from auditstream.alerts.evaluator import Evaluator
from auditstream.alerts.model import parse_rule
from auditstream.alerts.storage import AlertDB
from auditstream.alerts.targets import TargetRefused, check_url, forbidden_address, resolve_target
from tests.alerts.receiver import receiver
from tests.alerts.rows import stored

PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "169.254.169.254",
        "fe80::1%eth0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "fd00::1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "100.64.0.1",
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden_address(address)


def test_one_internal_address_among_public_ones_refuses_the_name() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC, "127.0.0.1"]

    with pytest.raises(TargetRefused) as info:
        resolve_target("https://hooks.example.com/x", "targets.0.url", resolve=resolve)
    assert info.value.field == "targets.0.url" and "127.0.0.1" in info.value.message


def test_rebinding_name_is_resolved_once_and_the_checked_address_is_used() -> None:
    answers = [[PUBLIC], ["127.0.0.1"]]  # public when checked, loopback on a second look
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return answers[len(calls) - 1]

    pinned = resolve_target("https://Rebind.Example.com:8443/hook?a=1", resolve=resolve)
    assert calls == [("rebind.example.com", 8443)]  # one resolution per attempt
    assert pinned.request_url == f"https://{PUBLIC}:8443/hook?a=1"  # connects to what was checked
    assert pinned.host_header == "rebind.example.com:8443"
    assert pinned.extensions == {"sni_hostname": "rebind.example.com"}  # TLS verifies the name


def test_pinned_urls_for_ipv6_default_ports_and_plain_http() -> None:
    v6 = resolve_target("https://hooks.example.com", resolve=lambda h, p: ["2606:2800:220:1::1"])
    assert v6.request_url == "https://[2606:2800:220:1::1]:443/"
    assert v6.host_header == "hooks.example.com"
    plain = resolve_target("http://hooks.example.com/a", resolve=lambda h, p: [PUBLIC])
    assert (plain.request_url, plain.host_header, plain.extensions) == (
        f"http://{PUBLIC}:80/a",
        "hooks.example.com",
        {},
    )


def test_allowed_private_targets_are_still_pinned_and_bad_urls_still_refused() -> None:
    pinned = resolve_target(
        "http://anything.test:81/", allow_private=True, resolve=lambda h, p: ["127.0.0.1"]
    )
    assert pinned.request_url == "http://127.0.0.1:81/"
    for url, why in [
        ("ftp://x/", "http and https"),
        ("http://u:p@x/", "credentials"),
        ("http:///x", "no host"),
    ]:
        with pytest.raises(TargetRefused, match=why):
            check_url(url, allow_private=True)

    def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(TargetRefused, match="does not resolve"):
        resolve_target("http://nowhere.invalid/", allow_private=True, resolve=unresolvable)


# --- real deliveries -------------------------------------------------------------------


def _queue_alert(db: AlertDB, url: str) -> None:
    spec = {
        "name": "role change",
        "kind": "match",
        "filter": {"action": ["user.role_changed"]},
        "targets": [{"type": "webhook", "url": url, "secret": "s" * 20}],
    }
    rule = db.create_rule("acme", parse_rule(spec).to_json(), "k1")
    ev = Evaluator(db.active_rules()["acme"], lateness=timedelta(minutes=5))
    matches = ev.match([stored(action="user.role_changed")])
    states = db.load_states(ev.state_keys(matches))
    fired = ev.apply(matches, states)
    db.commit_page("acme", {0: 0}, states, fired, rule_versions={rule["id"]: 1})


def _deliver(worker: DeliveryWorker, db: AlertDB, within: float = 20.0) -> dict:
    """Run the worker until the one delivery is no longer pending (or the deadline passes)."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and db.delivery_counts().get("pending", 0):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling the delivery log, with a deadline
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    (alert,) = db.list_alerts("acme")
    return db.get_alert(alert["id"], "acme")["deliveries"][0]


def test_delivery_to_localhost_is_refused_unless_private_targets_are_allowed(tmp_path: Path) -> None:
    with receiver() as hooks:
        url = hooks.url.replace("127.0.0.1", "localhost") + "/hook"
        db = AlertDB(tmp_path / "refused.sqlite3")
        _queue_alert(db, url)
        # give_up_seconds=0: the first refusal is final, so the test need not wait out retries.
        refused = _deliver(DeliveryWorker(db, allow_private=False, give_up_seconds=0), db)
        assert refused["status"] == "failed"
        assert (
            "localhost" in refused["last_error"]
            and "AUDITSTREAM_ALLOW_PRIVATE_TARGETS" in refused["last_error"]
        )
        assert hooks.on("/hook") == []  # nothing reached the receiver

        db = AlertDB(tmp_path / "allowed.sqlite3")
        _queue_alert(db, url)
        delivered = _deliver(DeliveryWorker(db, allow_private=True), db)
        assert delivered["status"] == "delivered"
        hooks.wait_for(lambda: len(hooks.on("/hook")) == 1, "the delivery")
        request = hooks.on("/hook")[0]
        assert request.headers["Host"] == url.split("/")[2]  # the name, not the address
        assert orjson.loads(request.body)["type"] == "alert.triggered"


def test_delivery_connects_to_the_resolved_address_not_a_second_lookup(tmp_path: Path) -> None:
    """A made-up name resolved by the worker's resolver reaches the receiver: the name itself
    resolves nowhere, so only a connection to the pinned address can have delivered it."""
    with receiver() as hooks:
        port = hooks.url.rsplit(":", 1)[1]
        db = AlertDB(tmp_path / "pinned.sqlite3")
        _queue_alert(db, f"http://rebind.invalid:{port}/pinned")
        lookups: list[str] = []

        def resolve(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.1"]

        delivered = _deliver(DeliveryWorker(db, allow_private=True, resolve=resolve), db)
        assert delivered["status"] == "delivered" and lookups == ["rebind.invalid"]
        assert hooks.on("/pinned")[0].headers["Host"] == f"rebind.invalid:{port}"
