"""Running the services: processor, feed followers and API in one process (embedded) or apart.

chDB allows one ClickHouse engine per process, so on the embedded default the
processor, the followers and the API must share a process, an event loop and a
``Store``. With a ClickHouse server (``http://...``) each can also run alone: processors
and APIs scale out, while the feed followers (the Merkle sealer and the alert evaluator,
which follow what the processors stored) run on exactly one instance per database, so a
tenant's log has one sealer and one signing key and an alert one evaluator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import uvicorn

from auditstream.config import Settings
from auditstream.integrity.service import RunningSealer, start_sealer
from auditstream.kafka_admin import ensure_pipeline_topics
from auditstream.processor.service import Processor, ProcessorFailed
from auditstream.store.store import Store

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``run_services`` owns shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    settings: Settings
    store: Store
    processor: Processor | None
    api_url: str | None


async def run_services(
    settings: Settings,
    *,
    api: bool = True,
    processor: bool = True,
    followers: bool | None = None,
    on_started: Callable[[Running], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
    store_factory: Callable[..., Store] = Store,
) -> None:
    """Start what is asked, call ``on_started``, run until SIGINT/SIGTERM (or ``stop``), stop in order.

    ``followers`` (each also gated by its own setting) default to running with the processor.

    ``store_factory`` builds the store (``Store`` by default); it is the seam where fault
    tests put a store that fails on cue, without a test hook in the production path.
    """
    stop = stop or asyncio.Event()
    followers = processor if followers is None else followers
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    store = store_factory(
        settings.resolved_clickhouse_dsn, settings.clickhouse_database, retention_days=settings.retention_days
    )
    await asyncio.to_thread(store.open)
    log.info("store open", extra={"dsn": _redact_dsn(settings.resolved_clickhouse_dsn)})

    proc: Processor | None = None
    sealer: RunningSealer | None = None
    alerts = None
    server: _Server | None = None
    serve_task: asyncio.Task[None] | None = None
    try:
        if processor or followers:
            await ensure_pipeline_topics(settings)
        if processor:
            proc = Processor(settings, store)
            await proc.start()
        if followers:
            if settings.sealer_enabled:
                # A feed follower on its own thread: it reads what the processor stored.
                sealer = start_sealer(settings, store)
            if settings.alerts_enabled:
                # A feed follower: reads what the processor stored, never on its write path.
                from auditstream.alerts.follower import AlertService

                alerts = AlertService(settings, store)
                await alerts.start()
        api_url = None
        # A processor or the followers alone still serve /healthz, /readyz and /metrics.
        if api or proc or followers:
            from auditstream.api.app import create_app

            app = create_app(settings, store, readiness=proc.readiness if proc else None, query_routes=api)
            config = uvicorn.Config(
                app,
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                access_log=False,
                lifespan="on",
                # X-Forwarded-For is judged by the app (AUDITSTREAM_TRUSTED_PROXIES), not by
                # uvicorn, whose default trusts any local client.
                proxy_headers=False,
            )
            server = _Server(config)
            serve_task = asyncio.create_task(server.serve())
            while not server.started:
                if serve_task.done():
                    await serve_task  # re-raises the start-up error (port taken, ...)
                    raise RuntimeError("API server stopped during start-up")
                await asyncio.sleep(0.05)
            api_url = f"http://{settings.api_host}:{settings.api_port}"
            log.info("API listening", extra={"url": api_url})
        if on_started:
            await on_started(Running(settings, store, proc, api_url))
        waiters = [asyncio.ensure_future(stop.wait())]
        if serve_task:
            waiters.append(serve_task)
        if proc:  # a batch that cannot be stored ends the process (nothing of it is committed)
            waiters.append(asyncio.ensure_future(proc.failed.wait()))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("stopping")
        if server and serve_task:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serve_task
        if sealer:
            await asyncio.to_thread(sealer.stop)
        if alerts:
            await alerts.stop()
        if proc:
            await proc.stop()
        await asyncio.to_thread(store.close)
        log.info("stopped")
    if proc and proc.failure is not None:
        # Non-zero exit from the top level: a supervisor restarts the process, which reads
        # the batch again (its offsets were never committed).
        raise ProcessorFailed("a batch could not be stored") from proc.failure


def _redact_dsn(dsn: str) -> str:
    """Never log a password that is part of a DSN."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return dsn
