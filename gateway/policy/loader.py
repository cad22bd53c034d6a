"""Load a policy from a YAML file or folder, validate and cross-check it, and report every problem."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from gateway.policy.model import Backend, Policy, Resilience, Route
from gateway.routing.hardware import JOULES_PER_TOKEN
from gateway.secret import Secret
from gateway.settings import read_secret

YAML_SUFFIXES = (".yaml", ".yml")
# Each top-level key of a policy file and how one file's fragment of it is validated on its own,
# so that a problem is reported against the file it is in.
_FRAGMENTS: dict[str, TypeAdapter[Any]] = {
    "backends": TypeAdapter(dict[str, Backend]),
    "routes": TypeAdapter(list[Route]),
    "resilience": TypeAdapter(Resilience),
}
_BACKEND: TypeAdapter[Backend] = TypeAdapter(Backend)
_SHOWN_VALUE_CHARS = 60
_HIDDEN_VALUES = frozenset({"api_key_env", "headers"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy: where it is and why."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.reason}"


class PolicyError(Exception):
    """A policy could not be loaded; `problems` lists everything found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid policy ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy, the files it came from, and the credentials its backends name."""

    policy: Policy
    files: tuple[Path, ...]
    secrets: Mapping[str, Secret | None] = field(repr=False)
    fingerprint: str


@dataclass
class _Source:
    """One parsed file and what it contributes, with origins kept for attributing cross-check problems."""

    file: str
    backends: dict[str, Backend] = field(default_factory=dict)
    raw_backends: dict[str, Any] = field(default_factory=dict)  # as written, even the invalid ones
    routes: list[Route] = field(default_factory=list)
    resilience: Resilience | None = None
    has_routes: bool = False


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping instead of silently keeping the last."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_policy(path: Path) -> LoadedPolicy:
    """Load a YAML file or a folder of them (merged in name order); raise PolicyError listing all problems."""
    files = _policy_files(path)
    contents = [(f, _read(f)) for f in files]
    problems: list[Problem] = []
    sources = [_parse(str(f), text, problems) for f, text in contents]
    # Provider, env var and hardware problems leave the policy's shape whole: routes are still cross-checked.
    checks = [problem for source in sources for problem in _check_backends(source)]
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
    return LoadedPolicy(policy, tuple(files), MappingProxyType(secrets), _fingerprint(path, contents))


def _fingerprint(root: Path, contents: list[tuple[Path, bytes]]) -> str:
    """A short digest of each file's name and bytes; names count because a rename can reorder routes."""
    digest = hashlib.sha256()
    for file, text in contents:
        name = file.relative_to(root).as_posix() if file != root else file.name
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


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise PolicyError([Problem(str(file), "-", f"cannot read: {exc.strerror or exc}")]) from exc


def _parse(file: str, text: bytes, problems: list[Problem]) -> _Source:
    """Parse and validate one file's fragments, appending what is wrong to `problems`."""
    source = _Source(file)
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        problems.append(Problem(file, "-", _yaml_reason(exc)))
        return source
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(file, "-", f"top level must be a mapping, not {type(data).__name__}"))
        return source
    for key, value in data.items():
        if key == "backends" and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            _parse_backends(source, value, problems)
            continue
        adapter = _FRAGMENTS.get(key) if isinstance(key, str) else None
        if adapter is None:
            problems.append(Problem(file, str(key), "unknown key"))
            continue
        try:
            setattr(source, key, adapter.validate_python(value))
        except ValidationError as exc:
            problems += (Problem(file, _dotted((key, *e["loc"])), _reason(e)) for e in exc.errors())
    source.has_routes = "routes" in data
    return source


def _parse_backends(source: _Source, raw: dict[str, Any], problems: list[Problem]) -> None:
    """Validate backend by backend, so one bad backend does not hide the others' problems."""
    source.raw_backends = raw
    for name, value in raw.items():
        try:
            source.backends[name] = _BACKEND.validate_python(value)
        except ValidationError as exc:
            loc = ("backends", name)
            problems += (Problem(source.file, _dotted((*loc, *e["loc"])), _reason(e)) for e in exc.errors())


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    what = ": ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"invalid YAML: {what}{where}"


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


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


def _check_backends(source: _Source) -> Iterator[Problem]:
    """Provider, credential and hardware checks on every backend as written, valid or not."""
    from gateway.providers.registry import dialects_of, known_kinds  # late: the registry imports adapters

    kinds = known_kinds()
    for name, backend in source.raw_backends.items():
        if not isinstance(backend, dict):
            continue
        at = f"backends.{name}"
        provider, key_env, hardware = (backend.get(k) for k in ("provider", "api_key_env", "hardware"))
        if isinstance(provider, str) and provider and provider not in kinds:
            reason = f"unknown provider {provider!r}; known: {', '.join(kinds)}"
            yield Problem(source.file, f"{at}.provider", reason)
        dialect = backend.get("dialect")
        if isinstance(provider, str) and isinstance(dialect, str) and dialect not in dialects_of(provider):
            known = ", ".join(dialects_of(provider)) or f"none for provider {provider!r}"
            yield Problem(source.file, f"{at}.dialect", f"unknown dialect {dialect!r}; known: {known}")
        # Not a valid name (maybe the key itself pasted here): the schema's problem, never echoed.
        if isinstance(key_env, str) and _ENV_NAME.fullmatch(key_env) and read_secret(key_env) is None:
            yield Problem(source.file, f"{at}.api_key_env", f"environment variable {key_env} is not set")
        declared = backend.get("joules_per_token") is not None
        if isinstance(hardware, str) and hardware not in JOULES_PER_TOKEN and not declared:
            # Its energy would otherwise be a silent guess that ranks it last for `greenest`.
            reason = (
                f"unknown hardware label {hardware!r}; known: {', '.join(JOULES_PER_TOKEN)} "
                "(or set joules_per_token on this backend)"
            )
            yield Problem(source.file, f"{at}.hardware", reason)


def _merge(origin: str, sources: list[_Source]) -> Policy:
    """Unite the backends and concatenate the routes of every file, in file order."""
    problems: list[Problem] = []
    backends: dict[str, Backend] = {}
    owner: dict[str, str] = {}
    for source in sources:
        for name, backend in source.backends.items():
            if name in owner:
                reason = f"backend {name!r} is also defined in {owner[name]}"
                problems.append(Problem(source.file, f"backends.{name}", reason))
            backends[name], owner[name] = backend, source.file
    if not backends:
        problems.append(Problem(origin, "backends", "no backends defined"))
    tuned = [s for s in sources if s.resilience is not None]
    for extra in tuned[1:]:
        problems.append(Problem(extra.file, "resilience", f"also defined in {tuned[0].file}; keep one"))
    if problems:
        raise PolicyError(problems)
    data: dict[str, Any] = {"backends": backends}
    if any(s.has_routes for s in sources):
        data["routes"] = [route for s in sources for route in s.routes]
    if tuned:
        data["resilience"] = tuned[0].resilience
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        # Whole-policy constraints only: each file's fragments have already been validated.
        raise PolicyError(
            [Problem(origin, _dotted(tuple(e["loc"])), _reason(e)) for e in exc.errors()]
        ) from exc


def _route_origins(policy: Policy, sources: list[_Source], default: str) -> list[tuple[str, int]]:
    """(file, index in that file) of each merged route; the built-in default route belongs to `default`."""
    origins = [(s.file, i) for s in sources for i in range(len(s.routes))]
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
    yield from _shadow_problems(policy, route)
    if route.backends is None:
        return
    for j, name in enumerate(route.backends):
        if name not in policy.backends:
            yield f"backends[{j}]", f"no backend named {name!r}"
    known = [name for name in route.backends if name in policy.backends]
    if serving and not serving.intersection(known) and (known or not route.backends):
        yield "backends", f"none of the allowed backends serves a model matching {glob!r}"


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
