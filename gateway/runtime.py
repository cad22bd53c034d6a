"""The per-process state the handlers share: settings, transport, router and the current catalog."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from gateway.api.auth import Keys
from gateway.events import Observers
from gateway.observability.logging import AccessLog
from gateway.observability.metrics import Metrics
from gateway.observability.recent import Recent
from gateway.observability.requestlog import RequestLog, request_log_from
from gateway.observability.tracing import Tracing, build_tracing
from gateway.policy.loader import LoadedPolicy
from gateway.resilience.health import Health
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import Router
from gateway.settings import Settings
from gateway.telemetry import TelemetryRecorder, TelemetryStore, make_store
from gateway.upstream import AiohttpTransport


@dataclass(slots=True)
class Runtime:
    settings: Settings
    transport: AiohttpTransport
    router: Router
    loaded: LoadedPolicy
    catalog: Catalog
    keys: Keys
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("routeway"))
    started: int = field(default_factory=lambda: int(time.time()))
    metrics: Metrics | None = None  # served at GET /metrics
    tracing: Tracing | None = None  # shut down (flushed) by the app's lifespan
    store: TelemetryStore | None = None  # started and closed by the app's lifespan
    access_log: AccessLog | None = None  # its last batch is flushed by the app's lifespan
    recent: Recent | None = None  # the dashboard's decisions and traffic buckets
    request_log: RequestLog | None = None  # closed (written out) by the app's lifespan

    @classmethod
    def create(cls, settings: Settings, loaded: LoadedPolicy) -> Runtime:
        transport = AiohttpTransport(
            pool_size=settings.upstream_pool_size,
            per_host=settings.upstream_pool_per_host,
            max_body=settings.max_upstream_body_bytes,
            max_event_bytes=settings.max_sse_event_bytes,
        )
        store = make_store(settings)
        health = Health(loaded.policy.resilience, store=store)
        recorder = TelemetryRecorder(store)
        access_log = AccessLog() if settings.access_log else None
        observers = Observers([recorder, health, *([access_log] if access_log is not None else [])])
        metrics = Metrics() if settings.metrics else None
        tracing = build_tracing(settings)  # None without an OTLP endpoint: no observer, no cost
        recent = Recent(settings.dashboard_decisions)
        request_log = request_log_from(settings)
        for observer in (metrics, tracing, recent, request_log):
            if observer is not None:
                observers.add(observer)
        return cls(
            settings=settings,
            transport=transport,
            router=Router(transport, observers, health, store),
            loaded=loaded,
            catalog=build_catalog(loaded.policy, loaded.secrets, loaded.fingerprint),
            keys=Keys.from_settings(settings),
            metrics=metrics,
            tracing=tracing,
            store=store,
            access_log=access_log,
            recent=recent,
            request_log=request_log,
        )

    def swap(self, loaded: LoadedPolicy) -> None:
        """Installs a new policy; requests in flight keep the catalog they started with."""
        self.catalog = build_catalog(loaded.policy, loaded.secrets, loaded.fingerprint)
        self.loaded = loaded
        if self.router.health is not None:
            self.router.health.configure(loaded.policy.resilience)
