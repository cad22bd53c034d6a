"""One policy document from a file and the files it includes, deep-merged, with the file each value came from.

A file may start with `include: [a.yaml, ...]` (paths relative to that file). The included documents are
merged in order, then the including file over them, as a JSON Merge Patch (RFC 7386): mappings merge key by
key, anything else is replaced, and `null` deletes what would be inherited. So the including file's keys
win. Bounded: at most MAX_DEPTH levels of includes, MAX_FILES file reads per document, MAX_INCLUDES names
per file; a cycle is a problem, not a loop. A backend written as `{offer: NAME, ...}` starts from the
document's `offers.NAME` (a catalog entry) with its own keys (nulls too) merged over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.policy.problems import PolicyError, Problem, dotted

MAX_DEPTH = 4
MAX_FILES = 32
MAX_INCLUDES = 16

Loc = tuple[str | int, ...]


@dataclass
class Document:
    """A root file's merged data; `origins` maps key paths to the file that set them (longest prefix wins)."""

    file: str
    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[Loc, str] = field(default_factory=dict)
    files: list[tuple[Path, bytes]] = field(default_factory=list)  # every file read, once, root first
    ok: bool = True  # False when a file could not be read or parsed: its problems are reported
    reads: int = 0  # files read, a file included twice counted twice (bounds a diamond of includes)

    def where(self, *loc: str | int) -> str:
        """The file that wrote the value at `loc` (or the nearest mapping holding it)."""
        return _lookup(self.origins, loc) or self.file

    @property
    def included(self) -> list[Path]:
        return [path for path, _ in self.files[1:]]


def read_document(root: Path, problems: list[Problem]) -> Document:
    """Read `root` and what it includes; every problem found is appended to `problems`."""
    doc = Document(str(root))
    resolved = _resolve(root, (), doc, problems)
    if resolved is not None:
        doc.data, doc.origins = resolved
        _resolve_offers(doc, problems)
    else:
        doc.ok = False
    return doc


def _resolve(
    file: Path, chain: tuple[Path, ...], doc: Document, problems: list[Problem]
) -> tuple[dict[str, Any], dict[Loc, str]] | None:
    """`chain`: the resolved paths of the files that included this one, outermost first."""
    data = _parse(file, _read(file, doc, chain, problems), problems)
    if data is None:
        return None
    origins: dict[Loc, str] = {(): str(file)}
    merged: dict[str, Any] = {}
    merged_origins: dict[Loc, str] = {}
    if "include" in data:
        _include(file, data.pop("include"), chain, doc, problems, merged, merged_origins)
    elif not _names_an_offer(data):
        return data, origins  # a plain file is validated as written
    # A backend naming an offer starts from it, so that its own keys (nulls too) apply over the offer's.
    _start_from_offers(data, str(file), merged, merged_origins)
    return merge(merged, data, merged_origins, origins, ()), merged_origins


def _include(
    file: Path,
    value: Any,
    chain: tuple[Path, ...],
    doc: Document,
    problems: list[Problem],
    merged: dict[str, Any],
    merged_origins: dict[Loc, str],
) -> None:
    """Merge the files `value` names, in order, into `merged`."""
    here = (*chain, file.resolve())
    for i, path in enumerate(_include_paths(file, value, len(chain), problems)):
        if path.resolve() in here:
            loop = [p.name for p in here[here.index(path.resolve()) :]] + [path.name]
            problems.append(Problem(str(file), f"include[{i}]", f"include cycle: {' -> '.join(loop)}"))
            continue
        if not path.is_file():
            problems.append(Problem(str(file), f"include[{i}]", f"no such file: {path}"))
            doc.ok = False
            continue
        if doc.reads >= MAX_FILES:
            reason = f"more than {MAX_FILES} file reads in one policy document (through includes)"
            problems.append(Problem(str(file), f"include[{i}]", reason))
            break
        sub = _resolve(path, here, doc, problems)
        if sub is None:
            doc.ok = False
            continue
        result = merge(merged, sub[0], merged_origins, sub[1], ())
        merged.clear()  # in place: the caller holds `merged`
        merged.update(result)


def _names_an_offer(data: dict[str, Any]) -> bool:
    backends = data.get("backends")
    return isinstance(backends, dict) and any(isinstance(b, dict) and "offer" in b for b in backends.values())


def _start_from_offers(
    data: dict[str, Any], file: str, merged: dict[str, Any], merged_origins: dict[Loc, str]
) -> None:
    """For each of this file's backends naming an offer (its own or an included file's), put the offer in
    `merged` where the backend will be merged over it, and drop the backend's `offer` key. An unknown name is
    left for `_resolve_offers` to report."""
    backends = data.get("backends")
    if not isinstance(backends, dict):
        return
    own, inherited = data.get("offers"), merged.get("offers")
    for name, raw in backends.items():
        offer_name = raw.get("offer") if isinstance(raw, dict) else None
        if not isinstance(offer_name, str):
            continue
        at: Loc = ("backends", name)
        if isinstance(own, dict) and isinstance(own.get(offer_name), dict):
            offer, origins = own[offer_name], {at: file}
        elif isinstance(inherited, dict) and isinstance(inherited.get(offer_name), dict):
            offer = inherited[offer_name]
            under = _under(merged_origins, ("offers", offer_name))
            origins = {(*at, *loc[2:]): source for loc, source in under}
        else:
            continue
        if not isinstance(merged.get("backends", {}), dict):
            continue
        merged["backends"] = {**merged.get("backends", {}), name: offer}
        merged_origins.setdefault(("backends",), file)
        _forget(merged_origins, at)
        merged_origins.update(origins)
        backends[name] = {k: v for k, v in raw.items() if k != "offer"}


def _read(file: Path, doc: Document, chain: tuple[Path, ...], problems: list[Problem]) -> bytes | None:
    doc.reads += 1
    try:
        text = file.read_bytes()
    except OSError as exc:
        if not chain:
            raise PolicyError([Problem(str(file), "-", f"cannot read: {exc.strerror or exc}")]) from exc
        problems.append(Problem(str(file), "-", f"cannot read (included): {exc.strerror or exc}"))
        return None
    if all(path.resolve() != file.resolve() for path, _ in doc.files):
        doc.files.append((file, text))
    return text


def _include_paths(file: Path, value: Any, depth: int, problems: list[Problem]) -> list[Path]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        problems.append(Problem(str(file), "include", "must be a file name or a list of file names"))
        return []
    if len(names) > MAX_INCLUDES:
        problems.append(Problem(str(file), "include", f"at most {MAX_INCLUDES} files; got {len(names)}"))
        return []
    if depth >= MAX_DEPTH:
        problems.append(Problem(str(file), "include", f"includes nested deeper than {MAX_DEPTH} levels"))
        return []
    # Relative to the including file, as a reader of that file would expect (an absolute path stays one).
    return [file.parent / name for name in names]


def merge(target: Any, patch: Any, origins: dict[Loc, str], patch_origins: dict[Loc, str], at: Loc) -> Any:
    """RFC 7386 merge of `patch` over `target` at key path `at`, keeping `origins` (absolute key paths of the
    merged document) true: a key set by the patch takes its file from `patch_origins`. Linear in the patch's
    size: only a replaced value (rare) costs a scan of `origins`."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        if target is not None:  # an absent key has no origins below it to forget
            _forget(origins, at)
        origins[at] = _lookup(patch_origins, at) or ""
        if not isinstance(patch, dict):
            return patch
        target = {}
    out = dict(target)
    for key, value in patch.items():
        loc = (*at, key)
        if value is None:
            out.pop(key, None)
            _forget(origins, loc)
        else:
            out[key] = merge(out.get(key), value, origins, patch_origins, loc)
    return out


def _resolve_offers(doc: Document, problems: list[Problem]) -> None:
    """Backends written as `{offer: NAME, ...}`: the offer's keys, with the backend's merged over them."""
    backends, offers = doc.data.get("backends"), doc.data.get("offers")
    if not isinstance(backends, dict):
        return
    for name, raw in list(backends.items()):
        if not isinstance(raw, dict) or "offer" not in raw:
            continue
        at: Loc = ("backends", name)
        offer_name = raw["offer"]
        offer = offers.get(offer_name) if isinstance(offers, dict) and isinstance(offer_name, str) else None
        if not isinstance(offer, dict):
            known = ", ".join(offers) if isinstance(offers, dict) and offers else "none (include a catalog)"
            reason = f"no offer named {offer_name!r}; known: {known}"
            problems.append(Problem(doc.where(*at, "offer"), f"{dotted(at)}.offer", reason))
            continue
        own = {k: v for k, v in raw.items() if k != "offer"}
        own_origins = dict(_under(doc.origins, at)) | {at: doc.where(*at)}
        from_offer = {(*at, *loc[2:]): file for loc, file in _under(doc.origins, ("offers", offer_name))}
        _forget(doc.origins, at)
        doc.origins.update(from_offer)
        doc.origins[at] = doc.where("offers", offer_name)
        backends[name] = merge(offer, own, doc.origins, own_origins, at)


def _lookup(origins: dict[Loc, str], loc: Loc) -> str | None:
    for end in range(len(loc), -1, -1):
        found = origins.get(loc[:end])
        if found:
            return found
    return None


def _under(origins: dict[Loc, str], at: Loc) -> Iterator[tuple[Loc, str]]:
    n = len(at)
    return ((loc, file) for loc, file in list(origins.items()) if loc[:n] == at)


def _forget(origins: dict[Loc, str], at: Loc) -> None:
    for loc, _ in _under(origins, at):
        del origins[loc]


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


def _parse(file: Path, text: bytes | None, problems: list[Problem]) -> dict[str, Any] | None:
    """The file's top-level mapping (empty file: empty mapping), or None with the problem appended."""
    if text is None:
        return None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        problems.append(Problem(str(file), "-", _yaml_reason(exc)))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(str(file), "-", f"top level must be a mapping, not {type(data).__name__}"))
        return None
    return data


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    what = ": ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"invalid YAML: {what}{where}"
