"""Validate JSON bodies against OpenAI's published OpenAPI spec (vendored in tests/reference/)."""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

# Vendored in the repo (MIT, see tests/reference/README.md) so a plain clone runs every spec test.
SPEC_PATH: Path = Path(__file__).resolve().parent / "reference" / "openai-openapi.yaml"

# The URI the whole translated spec is registered under; `#/components/schemas/X` refs resolve against it.
SPEC_URI = "urn:openai-spec"

# Bump whenever `translate_spec` changes, so pickles made by an older translation are not reused.
_TRANSLATION_VERSION = 2
_CACHE_PREFIX = "openai-spec-"
_MAX_MESSAGE = 240

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def spec_available(path: Path | None = None) -> bool:
    """Whether OpenAI's spec file is present (at `SPEC_PATH` unless told otherwise)."""
    return (path or SPEC_PATH).is_file()


# ---------------------------------------------------------------------------------------------------------
# OpenAPI 3.0-isms → JSON Schema 2020-12
# ---------------------------------------------------------------------------------------------------------

# Keywords whose subschemas a plain `type` widening would not reach: null must be admitted beside them.
_COMPOSITE_KEYWORDS = ("$ref", "allOf", "anyOf", "oneOf", "not", "const", "if")


def _admit_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Return `schema` widened to also accept null (what OpenAPI 3.0's `nullable: true` means)."""
    declared = schema.get("type")
    if declared is not None and not any(k in schema for k in _COMPOSITE_KEYWORDS):
        types = [declared] if isinstance(declared, str) else list(declared)
        if "null" not in types:
            types.append("null")
        widened = {**schema, "type": types}
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            widened["enum"] = [*schema["enum"], None]
        return widened
    # No `type` (or one beside $ref/allOf/...): keep the schema whole as one branch, null as the other.
    return {"anyOf": [schema, {"type": "null"}]}


def _translate_node(node: Any) -> Any:
    if isinstance(node, list):
        return [_translate_node(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {key: _translate_node(value) for key, value in node.items()}
    # 3.0 boolean exclusive bounds (`minimum: 0, exclusiveMinimum: true`) are numbers in 2020-12.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            del out[exclusive]
            if flag and bound in out:
                out[exclusive] = out.pop(bound)
    # Only a boolean `nullable` is the keyword; a property *named* "nullable" would map to a schema dict.
    nullable = out.get("nullable")
    if isinstance(nullable, bool):
        del out["nullable"]
        if nullable:
            out = _admit_null(out)
    return out


def translate_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the whole spec whose schemas mean under JSON Schema 2020-12 what OpenAPI means.

    `discriminator`, `example`, `deprecated`, `x-*` and `format` need no change: the validator ignores
    unknown keywords, treats the rest as annotations, and does not enforce `format` without a checker.
    """
    translated = _translate_node(dict(spec))
    assert isinstance(translated, dict)
    schemas = translated.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        schemas[name] = _replace_recursive_refs(schema, f"#/components/schemas/{name}")
    return translated


def _replace_recursive_refs(node: Any, self_ref: str) -> Any:
    """Draft 2019-09's `$recursiveRef: "#"` (CompoundFilter) means "this named schema" here; 2020-12
    ignores the keyword, so point it at the schema explicitly."""
    if isinstance(node, list):
        return [_replace_recursive_refs(item, self_ref) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _replace_recursive_refs(v, self_ref) for k, v in node.items() if k != "$recursiveAnchor"}
    if out.get("$recursiveRef") == "#":
        del out["$recursiveRef"]
        out["$ref"] = self_ref
    return out


# ---------------------------------------------------------------------------------------------------------
# Loading, with a pickle cache (parsing + translating 3 MB of YAML takes a while on every test run)
# ---------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where translated specs are pickled: a per-user folder under the system temp dir."""
    uid = getattr(os, "getuid", lambda: None)()
    return Path(tempfile.gettempdir()) / f"routeway-spec-cache-{uid if uid is not None else 'user'}"


def _trusted_cache_dir(folder: Path) -> Path | None:
    """`folder`, created if need be, or None when it cannot be trusted (not ours, writable by others):
    unpickling a file someone else can write would run their code."""
    uid = getattr(os, "getuid", lambda: None)()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if uid is not None and (info.st_uid != uid or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return None
    return folder


def _cache_key(path: Path) -> str:
    info = path.stat()
    raw = f"v{_TRANSLATION_VERSION}:{info.st_size}:{info.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _read_cache(cache_file: Path) -> dict[str, Any] | None:
    try:
        with cache_file.open("rb") as fh:
            loaded = pickle.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError):
        return None  # unreadable or truncated: rebuild it
    if isinstance(loaded, dict) and isinstance(loaded.get("components"), dict):
        return loaded
    return None


def _write_cache(folder: Path, cache_file: Path, spec: dict[str, Any]) -> None:
    tmp_name: str | None = None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-", delete=False) as fh:
            tmp_name = fh.name
            pickle.dump(spec, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp_name, cache_file)  # atomic: a parallel run sees the old file or the new, never half
        tmp_name = None
        for stale in folder.glob(f"{_CACHE_PREFIX}*.pickle"):
            if stale != cache_file:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # a cache is an optimisation; never fail a test run for it
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


def load_translated_spec(
    path: Path | None = None, *, use_cache: bool = True, cache_dir: Path | None = None
) -> dict[str, Any]:
    """Parse the spec and translate it for JSON Schema 2020-12, through the pickle cache when allowed."""
    path = path or SPEC_PATH
    folder = _trusted_cache_dir(cache_dir or default_cache_dir()) if use_cache else None
    cache_file = folder / f"{_CACHE_PREFIX}{_cache_key(path)}.pickle" if folder else None
    if cache_file is not None:
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached
    with path.open("rb") as fh:
        raw = yaml.load(fh, Loader=_Loader)  # a SafeLoader, C or pure-Python
    if not isinstance(raw, dict) or "components" not in raw:
        raise ValueError(f"{path} is not an OpenAPI document with components")
    spec = translate_spec(raw)
    if folder is not None and cache_file is not None:
        _write_cache(folder, cache_file, spec)
    return spec


# ---------------------------------------------------------------------------------------------------------
# The validator
# ---------------------------------------------------------------------------------------------------------


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _closest_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the anyOf/oneOf branch the instance came closest to matching.

    Branches the instance is not even the right type for (say the `{type: "null"}` arm of a nullable) are
    passed over; of the rest, the one with the fewest errors wins, the deepest on a tie.
    """
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context or []:
        branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)

    def wrong_type(errors: list[ValidationError]) -> bool:
        return any(e.validator == "type" and not e.relative_path for e in errors)

    plausible = [errs for errs in branches.values() if not wrong_type(errs)] or list(branches.values())
    if not plausible:
        return []
    return min(plausible, key=lambda errs: (len(errs), -max(len(e.relative_path) for e in errs)))


def _describe(error: ValidationError, depth: int = 0) -> str:
    line = f"{error.json_path}: {_shorten(error.message)}"
    if error.context and depth < 3:
        # anyOf/oneOf: the bare "is not valid under any of the given schemas" says nothing; name why.
        reasons = [_describe(sub, depth + 1) for sub in _closest_branch(error)[:3]]
        if reasons:
            line += f" (closest branch: {'; '.join(reasons)})"
    return line


class SpecValidator:
    """Validates instances against `components/schemas/<name>` of OpenAI's spec (JSON Schema 2020-12)."""

    def __init__(self, path: Path | None = None, *, use_cache: bool = True) -> None:
        self.path = path or SPEC_PATH
        self.spec = load_translated_spec(self.path, use_cache=use_cache)
        self.schemas: Mapping[str, Any] = self.spec["components"]["schemas"]
        resource = DRAFT202012.create_resource(self.spec)
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    def schema(self, schema_name: str) -> Mapping[str, Any]:
        """The translated schema named `schema_name` (KeyError naming the file when absent)."""
        try:
            schema = self.schemas[schema_name]
        except KeyError:
            raise KeyError(f"no schema {schema_name!r} in components/schemas of {self.path}") from None
        assert isinstance(schema, Mapping)
        return schema

    def _validator(self, schema_name: str) -> Draft202012Validator:
        validator = self._validators.get(schema_name)
        if validator is None:
            self.schema(schema_name)  # fail early and clearly on a misspelt name
            root = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
            validator = Draft202012Validator(root, registry=self._registry)
            self._validators[schema_name] = validator
        return validator

    def errors(self, schema_name: str, instance: object) -> list[str]:
        """Every way `instance` fails `schema_name`, as `<json path>: <message>` lines; empty when valid."""
        found = self._validator(schema_name).iter_errors(instance)
        ordered = sorted(found, key=lambda e: ([str(p) for p in e.absolute_path], e.message))
        return [_describe(error) for error in ordered]

    def is_valid(self, schema_name: str, instance: object) -> bool:
        return self._validator(schema_name).is_valid(instance)

    def validate(self, schema_name: str, instance: object) -> None:
        """Raise AssertionError listing every validation error when `instance` does not match."""
        problems = self.errors(schema_name, instance)
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise AssertionError(
                f"body does not match OpenAI's {schema_name} ({len(problems)} error(s)):\n{listing}"
            )


@functools.cache
def shared_spec_validator() -> SpecValidator:
    """The process-wide validator (building one costs a spec load)."""
    return SpecValidator()


def spec_validator() -> SpecValidator:
    """The shared validator; the calling test fails (never skips) when the vendored spec is missing."""
    if not spec_available():
        pytest.fail(f"OpenAI spec not found at {SPEC_PATH}: it is part of the repo, restore it from git")
    return shared_spec_validator()
