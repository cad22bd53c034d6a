"""Load a policy from a YAML file or folder, validate and cross-check it, and report every problem."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.policy.include import Document, read_document
from gateway.policy.model import Backend, HardwareSpec, ModelEntry, Policy, Resilience, Route
from gateway.policy.problems import PolicyError, Problem, dotted
from gateway.policy.quantization import quantization_violation
from gateway.routing.hardware import JOULES_PER_TOKEN
from gateway.secret import Secret
from gateway.settings import read_secret

__all__ = ["YAML_SUFFIXES", "LoadedPolicy", "PolicyError", "Problem", "load_policy"]

YAML_SUFFIXES = (".yaml", ".yml")
# Each top-level key of a policy file and how one file's fragment of it is validated on its own,
# so that a problem is reported against the file it is in.
_FRAGMENTS: dict[str, TypeAdapter[Any]] = {
    "backends": TypeAdapter(dict[str, Backend]),
    "routes": TypeAdapter(list[Route]),
    "resilience": TypeAdapter(Resilience),
    "hardware": TypeAdapter(dict[str, HardwareSpec]),
}
_BACKEND: TypeAdapter[Backend] = TypeAdapter(Backend)
_OFFER_MODELS: TypeAdapter[dict[str, ModelEntry]] = TypeAdapter(dict[str, ModelEntry])
_SHOWN_VALUE_CHARS = 60
_HIDDEN_VALUES = frozenset({"api_key_env", "headers"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOUNS = {"backends": "backend", "hardware": "hardware label"}


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy, the files it was read from (includes too) and the credentials its backends name."""

    policy: Policy
    files: tuple[Path, ...]
    secrets: Mapping[str, Secret | None] = field(repr=False)
    fingerprint: str


@dataclass
class _Source:
    """One root file's document and what it contributes; `doc.where` names the file each value came from."""

    doc: Document
    backends: dict[str, Backend] = field(default_factory=dict)
    raw_backends: dict[str, Any] = field(default_factory=dict)  # as written, even the invalid ones
    routes: list[Route] = field(default_factory=list)
    resilience: Resilience | None = None
    hardware: dict[str, HardwareSpec] = field(default_factory=dict)
    raw_offers: dict[str, Any] = field(default_factory=dict)
    has_routes: bool = False

    @property
    def file(self) -> str:
        return self.doc.file

    def where(self, *loc: str | int) -> str:
        return self.doc.where(*loc)


def load_policy(path: Path) -> LoadedPolicy:
    """Load a YAML file or a folder of them (merged in name order), each with the files it includes; raise
    PolicyError listing all problems. In a folder, a file another one includes is not a policy of its own."""
    read = [_read_document(f) for f in _policy_files(path)]
    included = {p.resolve() for doc, _ in read for p in doc.included}
    # File by file, each file's problems together (those of a file also included are reported once, there).
    problems: list[Problem] = []
    sources: list[_Source] = []
    docs: list[Document] = []
    for doc, found in read:
        if Path(doc.file).resolve() not in included:
            docs.append(doc)
            problems += found
            if doc.ok:
                sources.append(_parse(doc, problems))
    # Provider, env var and hardware problems leave the policy's shape whole: routes are still cross-checked.
    labels = _hardware_labels(sources)
    checks = [problem for source in sources for problem in _check_backends(source, labels)]
    checks += [problem for source in sources for problem in _check_offers(source, labels)]
    if problems:
        raise PolicyError(problems + checks)
    try:
        policy = _merge(str(path), sources)
    except PolicyError as err:
        raise PolicyError(err.problems + checks) from None
    problems = checks + _check_routes(policy, sources)
    if problems:
        raise PolicyError(problems)
    secrets = {
        name: read_secret(b.api_key_env) if b.api_key_env else None for name, b in policy.backends.items()
    }
    contents = _unique(f for doc in docs for f in doc.files)
    files = tuple(f for f, _ in contents)
    return LoadedPolicy(policy, files, MappingProxyType(secrets), _fingerprint(path, contents))


def _read_document(file: Path) -> tuple[Document, list[Problem]]:
    found: list[Problem] = []
    return read_document(file, found), found


def _unique(contents: Iterator[tuple[Path, bytes]]) -> list[tuple[Path, bytes]]:
    seen: set[Path] = set()
    out = []
    for file, text in contents:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            out.append((file, text))
    return out


def _fingerprint(root: Path, contents: list[tuple[Path, bytes]]) -> str:
    """A short digest of each file's name and bytes; names count because a rename can reorder routes."""
    digest = hashlib.sha256()
    base = root if root.is_dir() else root.parent
    for file, text in contents:
        name = file.name if file == root else Path(os.path.relpath(file, base)).as_posix()
        digest.update(f"{name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()[:16]


def _policy_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PolicyError([Problem(str(path), "-", "no such file or folder")])
    files = sorted(
        p for p in path.iterdir() if p.suffix in YAML_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise PolicyError([Problem(str(path), "-", "folder contains no *.yaml or *.yml files")])
    return files


def _parse(doc: Document, problems: list[Problem]) -> _Source:
    """Validate one document's fragments, appending what is wrong to `problems`."""
    source = _Source(doc)
    for key, value in doc.data.items():
        if key == "backends" and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            _parse_backends(source, value, problems)
            continue
        if key == "offers":  # catalog entries: inert until a backend names one (include.py)
            if isinstance(value, dict):
                source.raw_offers = value
            else:
                problems.append(
                    Problem(source.where(key), key, "must be a mapping of offer names to backends")
                )
            continue
        adapter = _FRAGMENTS.get(key) if isinstance(key, str) else None
        if adapter is None:
            problems.append(Problem(source.where(key), str(key), "unknown key"))
            continue
        try:
            setattr(source, key, adapter.validate_python(value))
        except ValidationError as exc:
            problems += (_problem(source, (key, *e["loc"]), e) for e in exc.errors())
    source.has_routes = "routes" in doc.data
    return source


def _problem(source: _Source, loc: tuple[Any, ...], error: Mapping[str, Any]) -> Problem:
    return Problem(source.where(*loc), dotted(loc), _reason(error))


def _parse_backends(source: _Source, raw: dict[str, Any], problems: list[Problem]) -> None:
    """Validate backend by backend, so one bad backend does not hide the others' problems."""
    source.raw_backends = raw
    for name, value in raw.items():
        try:
            source.backends[name] = _BACKEND.validate_python(value)
        except ValidationError as exc:
            problems += (_problem(source, ("backends", name, *e["loc"]), e) for e in exc.errors())


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    value = error.get("input")
    # Where a credential may have been pasted by mistake (a key instead of its env var's name), the
    # value is never echoed: problems reach terminals, logs and /admin/reload answers.
    hidden = _HIDDEN_VALUES.intersection(str(part) for part in error["loc"])
    # A `base_url` problem already quotes the URL, with its password and query masked.
    if error["type"] in ("missing", "base_url") or isinstance(value, dict | list) or hidden:
        return str(error["msg"])
    shown = repr(value)
    if len(shown) > _SHOWN_VALUE_CHARS:
        shown = shown[: _SHOWN_VALUE_CHARS - 3] + "..."
    return f"{error['msg']}; got {shown}"


def _hardware_labels(sources: list[_Source]) -> list[str]:
    """Every hardware label a backend may name: the shipped catalog's and the policy's own."""
    return list(dict.fromkeys([*JOULES_PER_TOKEN, *(label for s in sources for label in s.hardware)]))


def _check_backends(source: _Source, labels: list[str]) -> Iterator[Problem]:
    """Provider, credential and hardware checks on every backend as written, valid or not."""
    for name, backend in source.raw_backends.items():
        if isinstance(backend, dict):
            yield from _check_backend(source, ("backends", name), backend, labels, credentials=True)


def _check_offers(source: _Source, labels: list[str]) -> Iterator[Problem]:
    """A catalog's offers are checked as the backends they become, but for what a backend using one must add
    (its key, a project) and credentials; an offer of a provider kind this build lacks gets its models and
    hardware label checked only."""
    from gateway.providers.registry import known_kinds  # late: the registry imports every adapter

    for name, offer in source.raw_offers.items():
        at = ("offers", name)
        if not isinstance(offer, dict):
            yield Problem(source.where(*at), dotted(at), "must be a mapping (a backend without its key)")
            continue
        yield from _check_backend(source, at, offer, labels, credentials=False)
        known = offer.get("provider") in known_kinds()
        try:
            if known:
                _BACKEND.validate_python(offer)
            else:
                _OFFER_MODELS.validate_python(offer.get("models"))
        except ValidationError as exc:
            # What an offer leaves out (a Vertex project, say) the backend that uses it must give.
            inner = () if known else ("models",)
            errors = (e for e in exc.errors() if e["type"] != "missing")
            yield from (_problem(source, (*at, *inner, *e["loc"]), e) for e in errors)


def _check_backend(
    source: _Source, at: tuple[str, ...], backend: dict[str, Any], labels: list[str], *, credentials: bool
) -> Iterator[Problem]:
    from gateway.providers.registry import dialects_of, known_kinds  # late: the registry imports adapters

    kinds = known_kinds()
    provider, key_env, hardware = (backend.get(k) for k in ("provider", "api_key_env", "hardware"))
    if credentials and isinstance(provider, str) and provider and provider not in kinds:
        reason = f"unknown provider {provider!r}; known: {', '.join(kinds)}"
        yield Problem(source.where(*at, "provider"), f"{dotted(at)}.provider", reason)
    dialect = backend.get("dialect")
    if isinstance(provider, str) and isinstance(dialect, str) and dialect not in dialects_of(provider):
        known = ", ".join(dialects_of(provider)) or f"none for provider {provider!r}"
        reason = f"unknown dialect {dialect!r}; known: {known}"
        yield Problem(source.where(*at, "dialect"), f"{dotted(at)}.dialect", reason)
    # Not a valid name (maybe the key itself pasted here): the schema's problem, never echoed.
    if (
        credentials
        and isinstance(key_env, str)
        and _ENV_NAME.fullmatch(key_env)
        and read_secret(key_env) is None
    ):
        reason = f"environment variable {key_env} is not set"
        yield Problem(source.where(*at, "api_key_env"), f"{dotted(at)}.api_key_env", reason)
    declared = backend.get("joules_per_token") is not None
    if isinstance(hardware, str) and hardware not in labels and not declared:
        # Its energy would otherwise be a silent guess that ranks it last for `greenest`.
        reason = (
            f"unknown hardware label {hardware!r}; known: {', '.join(labels)} "
            "(or set joules_per_token on this backend, or add the label under `hardware:`)"
        )
        yield Problem(source.where(*at, "hardware"), f"{dotted(at)}.hardware", reason)


def _merge(origin: str, sources: list[_Source]) -> Policy:
    """Unite the backends and hardware labels and concatenate the routes of every file, in file order."""
    problems: list[Problem] = []
    data: dict[str, Any] = {}
    for key in ("backends", "hardware"):
        data[key] = _unite(key, sources, problems)
    if not data["backends"]:
        problems.append(Problem(origin, "backends", "no backends defined"))
    tuned = [s for s in sources if s.resilience is not None]
    for extra in tuned[1:]:
        reason = f"also defined in {tuned[0].where('resilience')}; keep one"
        problems.append(Problem(extra.where("resilience"), "resilience", reason))
    if problems:
        raise PolicyError(problems)
    if any(s.has_routes for s in sources):
        data["routes"] = [route for s in sources for route in s.routes]
    if tuned:
        data["resilience"] = tuned[0].resilience
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        # Whole-policy constraints only: each file's fragments have already been validated.
        raise PolicyError(
            [Problem(origin, dotted(tuple(e["loc"])), _reason(e)) for e in exc.errors()]
        ) from exc


def _unite(key: str, sources: list[_Source], problems: list[Problem]) -> dict[str, Any]:
    """One mapping from every file's `key` section; a name defined in two files is a problem."""
    united: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for source in sources:
        for name, value in getattr(source, key).items():
            file = source.where(key, name)
            if name in owner:
                reason = f"{_NOUNS[key]} {name!r} is also defined in {owner[name]}"
                problems.append(Problem(file, f"{key}.{name}", reason))
            united[name], owner[name] = value, file
    return united


def _route_origins(policy: Policy, sources: list[_Source], default: str) -> list[tuple[str, int]]:
    """(file, index in that file) of each merged route; the built-in default route belongs to `default`."""
    origins = [(s.where("routes"), i) for s in sources for i in range(len(s.routes))]
    return origins if len(origins) == len(policy.routes) else [(default, 0)] * len(policy.routes)


def _check_routes(policy: Policy, sources: list[_Source]) -> list[Problem]:
    problems: list[Problem] = []
    origins = _route_origins(policy, sources, sources[0].file)
    first_seen: dict[str, tuple[str, int]] = {}
    for route, (file, i) in zip(policy.routes, origins, strict=True):
        at = f"routes[{i}]"
        if route.name in first_seen:
            other_file, other_i = first_seen[route.name]
            reason = f"duplicate route name {route.name!r} (first used at routes[{other_i}] in {other_file})"
            problems.append(Problem(file, f"{at}.name", reason))
        first_seen.setdefault(route.name, (file, i))
        problems += (Problem(file, f"{at}.{path}", reason) for path, reason in _route_problems(policy, route))
    return problems


def _route_problems(policy: Policy, route: Route) -> Iterator[tuple[str, str]]:
    """(path within the route, reason) for each way the route cannot reach a backend."""
    glob = route.match.model
    serving = {name for name, b in policy.backends.items() if any(fnmatchcase(m, glob) for m in b.models)}
    if not serving:
        yield "match.model", f"{glob!r} matches no model of any backend"
    yield from _quantization_problems(policy, route)
    yield from _shadow_problems(policy, route)
    if route.backends is None:
        return
    for j, name in enumerate(route.backends):
        if name not in policy.backends:
            yield f"backends[{j}]", f"no backend named {name!r}"
    known = [name for name in route.backends if name in policy.backends]
    if serving and not serving.intersection(known) and (known or not route.backends):
        yield "backends", f"none of the allowed backends serves a model matching {glob!r}"


def _quantization_problems(policy: Policy, route: Route) -> Iterator[tuple[str, str]]:
    """A precision limit that no model the route matches meets would refuse every request."""
    limit = route.quantization
    if limit.allow is None and limit.min_precision is None:
        return
    allow = frozenset(limit.allow) if limit.allow is not None else None
    served = [
        entry.quantization
        for backend in policy.backends.values()
        for model, entry in backend.models.items()
        if fnmatchcase(model, route.match.model)
    ]
    if served and all(quantization_violation(q, allow, limit.min_precision, None) for q in served):
        declared = ", ".join(sorted({q or "undeclared" for q in served}))
        yield "quantization", f"no model the route matches meets it (they are served at: {declared})"


def _shadow_problems(policy: Policy, route: Route) -> Iterator[tuple[str, str]]:
    """Each shadow backend must exist and serve a model the route matches (else it is never mirrored to)."""
    if route.shadow is None:
        return
    glob = route.match.model
    for j, name in enumerate(route.shadow.backends):
        backend = policy.backends.get(name)
        if backend is None:
            yield f"shadow.backends[{j}]", f"no backend named {name!r}"
        elif not any(fnmatchcase(m, glob) for m in backend.models):
            yield f"shadow.backends[{j}]", f"backend {name!r} serves no model matching {glob!r}"
