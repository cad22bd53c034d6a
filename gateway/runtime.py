"""The per-process state the handlers share: settings, transport, router and the current catalog."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from gateway.access.guards import Guards
from gateway.access.principal import Keys
from gateway.access.tenancy import Tenancy
from gateway.events import Observers, RequestIds
from gateway.frontdoors import conversations as stored
from gateway.frontdoors.conversations import Conversations
from gateway.observability.logging import AccessLog
from gateway.observability.metrics import Metrics
from gateway.observability.recent import Recent
from gateway.observability.requestlog import RequestLog, request_log_from
from gateway.observability.tracing import Tracing, build_tracing
from gateway.policy.loader import LoadedPolicy
from gateway.providers.credentials import CredentialProvider, close_all, providers_for, start_all
from gateway.resilience.health import Health
from gateway.routing.candidates import Catalog, build_catalog
from gateway.routing.router import Router
from gateway.routing.shadow import Shadow
from gateway.routing.shadow_cap import DailyCap, LocalCap, RedisCap
from gateway.settings import Settings
from gateway.telemetry import TelemetryRecorder, TelemetryStore, make_store
from gateway.telemetry.loadsignals import LoadScraper, scrape_targets
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
    # Backend name → its credential provider; started and closed by the lifespan, replaced with the policy.
    credentials: dict[str, CredentialProvider] = field(default_factory=dict)
    guards: Guards = field(default_factory=Guards)  # the admit/settle stage (access/guards.py)
    # Stored responses (the Responses API's `store`); Redis when the process has a Redis URL.
    conversations: Conversations = field(default_factory=stored.in_memory)
    request_ids: RequestIds = field(default_factory=RequestIds)  # this runtime's own prefix and counter
    shadow: Shadow | None = None  # mirrors sampled requests of routes with `shadow:` (routing/shadow.py)
    tenancy: Tenancy | None = None  # virtual keys: their store, lookup cache, limits and ledger
    scraper: LoadScraper | None = None  # backends' metrics pages, into the store (loadsignals.py)
    _replacing: set[asyncio.Task[None]] = field(default_factory=set)
    _shadow_observed: bool = False  # the shadow observer was added (routes with `shadow:` were loaded)

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
        shared = settings.metrics_dir if settings.workers > 1 else None  # one scrape sees every worker
        metrics = Metrics(None, shared, settings.metrics_share_interval_s) if settings.metrics else None
        on_drop = metrics.span_dropped if metrics is not None else None
        tracing = build_tracing(settings, on_drop=on_drop)  # None without an OTLP endpoint: no observer
        recent = Recent(settings.dashboard_decisions)
        request_log = request_log_from(settings)
        shadow = Shadow(
            transport,
            recorder,
            _shadow_cap(settings),
            health=health,
            metrics=metrics,
            max_concurrent=settings.shadow_max_concurrent,
        )
        for observer in (metrics, tracing, recent, request_log):  # shadow joins last (_observe_shadow)
            if observer is not None:
                observers.add(observer)
        credentials = _credentials(settings, loaded)
        tenancy = Tenancy.from_settings(
            settings,
            replicas=lambda: getattr(store, "replicas", 1),
            on_spend=metrics.team_spend if metrics is not None else None,
        )
        scraper = LoadScraper(
            store,
            max_bytes=settings.load_scrape_max_bytes,
            timeout_s=settings.load_scrape_timeout_s,
            on_result=metrics.load_scraped if metrics is not None else None,
        )
        scraper.configure(scrape_targets(loaded.policy.backends))
        rt = cls(
            settings=settings,
            transport=transport,
            router=Router(transport, observers, health, store),
            loaded=loaded,
            catalog=build_catalog(loaded.policy, credentials, loaded.fingerprint),
            keys=Keys.from_settings(settings),
            credentials=credentials,
            guards=Guards.from_settings(settings, tenancy.guard),
            conversations=stored.from_settings(settings),
            tenancy=tenancy,
            metrics=metrics,
            tracing=tracing,
            store=store,
            access_log=access_log,
            recent=recent,
            request_log=request_log,
            shadow=shadow,
            scraper=scraper,
        )
        rt._observe_shadow(loaded)
        return rt

    def swap(self, loaded: LoadedPolicy) -> None:
        """Installs a new policy; requests in flight keep the catalog (and credentials) they started with."""
        old, self.credentials = self.credentials, _credentials(self.settings, loaded)
        self.catalog = build_catalog(loaded.policy, self.credentials, loaded.fingerprint)
        self._replace_credentials(old)
        self.loaded = loaded
        if self.scraper is not None:
            self.scraper.configure(scrape_targets(loaded.policy.backends))
        if self.router.health is not None:
            self.router.health.configure(loaded.policy.resilience)
        self._observe_shadow(loaded)

    def _observe_shadow(self, loaded: LoadedPolicy) -> None:
        """The shadow observer joins, last (after the answer), once a policy has a route with `shadow:`: until
        then it costs nothing per request. It stays through a reload that drops them (it then has no job)."""
        if self.shadow is None or self._shadow_observed:
            return
        if any(route.shadow is not None for route in loaded.policy.routes):
            self.router.observers.add(self.shadow)
            self._shadow_observed = True

    async def start(self) -> None:
        """Starts what the request path relies on in the background (credential refresh)."""
        await start_all(self.credentials.values())
        if self.tenancy is not None:
            await self.tenancy.start()
        if self.scraper is not None:
            await self.scraper.start()

    async def close(self) -> None:
        if self.shadow is not None:
            await self.shadow.close()
        if self.scraper is not None:
            await self.scraper.close()
        await self.guards.drain()
        if self.tenancy is not None:
            await self.tenancy.close()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        await close_all(self.credentials.values())
        await self.conversations.store.close()

    def _replace_credentials(self, old: dict[str, CredentialProvider]) -> None:
        """Starts the new providers and closes the old ones off the caller's path (a reload is sync)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test swapping by hand): nothing was started either
            return
        task = loop.create_task(self._replace(old, self.credentials))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, old: dict[str, CredentialProvider], new: dict[str, CredentialProvider]) -> None:
        await start_all(new.values())
        await close_all(old.values())


def _shadow_cap(settings: Settings) -> DailyCap:
    """Shadow spend counted across replicas when Redis is configured, else in this process."""
    if settings.redis_url:
        return RedisCap(
            settings.redis_url,
            prefix=settings.telemetry_redis_prefix,
            timeout_s=max(0.25, settings.redis_timeout_ms / 1000),  # never on a client's path
            cluster=settings.redis_cluster,
        )
    return LocalCap()


def _credentials(settings: Settings, loaded: LoadedPolicy) -> dict[str, CredentialProvider]:
    google = settings.google_application_credentials
    return providers_for(loaded.secrets, loaded.policy.backends, google_credentials=google)
