"""What the API runs beside its routes: the export job runner and the Kafka publisher.

``install_background`` puts both on ``app.state`` and returns the lifespan that
starts the runner (resuming interrupted jobs) and, at shutdown, stops it and
flushes and closes the publisher.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from auditstream.api.jobs import ExportRunner, JobStore
from auditstream.api.publisher import Publisher
from auditstream.config import Settings
from auditstream.events.attribution import attributor_for
from auditstream.integrity.service import export_proof, shared_ledger
from auditstream.store import Store

__all__ = ["EXPORT_WORKERS", "install_background"]

EXPORT_WORKERS = 2


def install_background(
    app: FastAPI, settings: Settings, store: Store, *, run_jobs: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    from auditstream.api.routes.exports import build_filter

    publisher = Publisher(settings.kafka_bootstrap, settings.topic, attributor_for(settings))
    jobs = JobStore(settings.resolved_keys_path.parent / "exports.sqlite3")
    runner = ExportRunner(
        jobs,
        store,
        settings.data_dir / "exports",
        build_filter,
        workers=EXPORT_WORKERS,
        read_bytes=settings.export_read_bytes,
        proof=lambda f: export_proof(settings, shared_ledger(app.state, store), f),
    )
    app.state.publisher = publisher
    app.state.export_jobs = jobs
    app.state.export_runner = runner

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            await run_in_threadpool(runner.start)
        try:
            yield
        finally:
            if run_jobs:
                await run_in_threadpool(runner.stop)
            await publisher.close()

    return lifespan
