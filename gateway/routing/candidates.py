"""The catalog compiled from a policy: logical model → route and the (backend, model) targets allowed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from gateway.endpoints import EndpointSpec, paths_serving
from gateway.errors import BadRequest, ModelNotFound
from gateway.policy.model import ModelType, Policy, Route
from gateway.providers.base import Adapter, Target
from gateway.providers.credentials import CredentialProvider
from gateway.providers.registry import adapter_for, base_url_of
from gateway.routing.preferences import Preferences, constraints_for, route_constraints
from gateway.routing.scoring import Constraints


@dataclass(frozen=True, slots=True)
class LogicalModel:
    name: str
    type: ModelType | None  # None: any endpoint, the upstream decides
    owned_by: str


@dataclass(slots=True)
class Catalog:
    """Immutable after build, swapped whole on a policy reload."""

    routes: list[Route]
    targets: dict[str, list[Target]]
    models: list[LogicalModel]
    adapters: dict[str, Adapter]
    fingerprint: str = ""
    _route_cache: dict[str, Route | None] = field(default_factory=dict)
    _types: dict[str, ModelType] = field(default_factory=dict)
    # By id(route): the catalog holds its routes, so an id cannot be reused while this entry exists.
    _constraints: dict[int, tuple[Route, Constraints]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._types = {m.name: m.type for m in self.models if m.type is not None}
        self._constraints = {id(r): (r, route_constraints(r)) for r in self.routes}

    def constraints(self, route: Route, prefs: Preferences) -> Constraints:
        """A route's hard constraints tightened by the request's preferences (built once per route)."""
        mine = self._constraints.get(id(route))
        return constraints_for(route, prefs, mine[1] if mine is not None and mine[0] is route else None)

    def route_for(self, model: str) -> Route | None:
        try:
            return self._route_cache[model]
        except KeyError:
            pass
        route = next((r for r in self.routes if fnmatchcase(model, r.match.model)), None)
        if len(self._route_cache) < 10_000:  # bounded: the model name comes from the client
            self._route_cache[model] = route
        return route

    def resolve(self, model: str, endpoint: EndpointSpec | None = None) -> tuple[Route, list[Target]]:
        """The route for `model` and its targets in policy order; 404 when nothing serves it, 400 when its
        declared `type` is not the one `endpoint` serves (an embedding model asked for a completion or the
        other way round; an untyped model serves any endpoint: the upstream decides)."""
        targets = self.targets.get(model)
        route = self.route_for(model) if targets else None
        if not targets or route is None:
            raise ModelNotFound(
                f"The model '{model[:200]}' does not exist or is not served here", param="model"
            )
        kind = self._types.get(model)
        if endpoint is not None and kind is not None and kind != endpoint.model_type:
            use = " or ".join(paths_serving(kind))
            raise BadRequest(
                f"'{model[:200]}' is {'an embedding' if kind == 'embedding' else 'a chat'} model: use {use}",
                param="model",
            )
        if route.backends is not None:
            allowed = route.backends
            targets = [t for t in targets if t.backend in allowed]
            if not targets:
                raise ModelNotFound(
                    f"No backend of route '{route.name}' serves '{model[:200]}'", param="model"
                )
        return route, targets


def build_catalog(
    policy: Policy, credentials: Mapping[str, CredentialProvider], fingerprint: str = ""
) -> Catalog:
    targets: dict[str, list[Target]] = {}
    models: dict[str, LogicalModel] = {}
    for name, backend in policy.backends.items():
        # A policy's own hardware figure (its `hardware:` section) beats the shipped catalog's.
        spec = policy.hardware.get(backend.hardware or "")
        joules = backend.joules_per_token or (spec.joules_per_token if spec is not None else None)
        for logical, entry in backend.models.items():
            targets.setdefault(logical, []).append(
                Target(
                    backend=name,
                    provider=backend.provider,
                    base_url=base_url_of(backend),
                    model=logical,
                    model_id=entry.id,
                    headers=dict(backend.headers),
                    hardware=backend.hardware,
                    input_price=entry.input_price,
                    output_price=entry.output_price,
                    context_window=entry.context_window,
                    ttft_ms=entry.ttft_ms,
                    tokens_per_s=entry.tokens_per_s,
                    joules_per_token=joules,
                    quantization=entry.quantization,
                    credential=credentials.get(name),
                    dialect=backend.dialect,
                )
            )
            known = models.get(logical)
            if known is None or (known.type is None and entry.type is not None):
                # One backend declaring the type is enough to restrict the logical model.
                models[logical] = LogicalModel(logical, entry.type, "routeway")
    adapters = {t.adapter_key: adapter_for(t.provider, t.dialect) for ts in targets.values() for t in ts}
    return Catalog(
        list(policy.routes), targets, sorted(models.values(), key=lambda m: m.name), adapters, fingerprint
    )
