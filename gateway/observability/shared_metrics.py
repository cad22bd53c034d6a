"""Metrics across `--workers` processes: each worker's snapshot in a shared folder, summed at scrape time.

Each worker keeps its plain-dict series (no per-request cost) and writes a snapshot file at most once per
interval after traffic; the worker that answers a scrape adds its live values to the others' files. A dead
worker's counters and histograms are folded into one archive file (totals never go back), its gauges
dropped, and its file removed. The folder is made fresh by the parent (`fresh_metrics_dir`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson

# family name -> [(label values, value)], value a float (counter, gauge) or a histogram row
Snapshot = dict[str, list[tuple[list[str], float | list[float]]]]

_PREFIX = "worker-"
_ARCHIVE = "dead-workers.json"
_LOCK = ".lock"


@contextlib.contextmanager
def fresh_metrics_dir(path: Path | None) -> Iterator[Path]:
    """The folder the workers share, emptied of earlier runs' files; a temporary one when none is set."""
    made = path is None
    folder = Path(tempfile.mkdtemp(prefix="routeway-metrics-")) if path is None else path
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{_PREFIX}*.json"):
        old.unlink(missing_ok=True)
    (folder / _ARCHIVE).unlink(missing_ok=True)
    try:
        yield folder
    finally:
        if made:
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge(into: dict[str, dict[tuple[str, ...], float | list[float]]], snap: Snapshot) -> None:
    """Adds a snapshot's values into `into` (counters, gauges and histogram rows summed)."""
    for name, rows in snap.items():
        family = into.setdefault(name, {})
        for labels, value in rows:
            key = tuple(labels)
            have = family.get(key)
            if have is None:
                family[key] = list(value) if isinstance(value, list) else value
            elif isinstance(have, list) and isinstance(value, list):
                family[key] = [a + b for a, b in zip(have, value, strict=True)]
            elif isinstance(have, float | int) and isinstance(value, float | int):
                family[key] = have + value


class SharedMetricsDir:
    """This worker's file in the shared folder, and the other workers' (live and dead) values."""

    def __init__(self, folder: Path, gauges: frozenset[str], pid: int | None = None) -> None:
        self.folder = folder
        self.gauges = gauges  # families that are a current level: a dead worker's values stop counting
        self.pid = os.getpid() if pid is None else pid
        self.path = folder / f"{_PREFIX}{self.pid}.json"

    def write(self, snap: Snapshot) -> None:
        """Replaces this worker's file atomically (a reader sees the old or the new one, never half)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(snap))
        os.replace(tmp, self.path)

    def others(self) -> list[Snapshot]:
        """The other workers' snapshots plus the dead workers' archive; folds newly dead workers first."""
        with self._locked():
            snaps: list[Snapshot] = []
            archive = self._read(self.folder / _ARCHIVE) or {}
            folded = False
            for path in sorted(self.folder.glob(f"{_PREFIX}*.json")):
                pid = int(path.stem[len(_PREFIX) :])
                if pid == self.pid:
                    continue
                snap = self._read(path)
                if _alive(pid):
                    if snap:
                        snaps.append(snap)
                    continue
                if snap:
                    archive = self._fold(archive, snap)
                    folded = True
                path.unlink(missing_ok=True)
            if folded:
                tmp = self.folder / f"{_ARCHIVE}.tmp"
                tmp.write_bytes(orjson.dumps(archive))
                os.replace(tmp, self.folder / _ARCHIVE)
            if archive:
                snaps.append(archive)
            return snaps

    def _fold(self, archive: Snapshot, snap: Snapshot) -> Snapshot:
        total: dict[str, dict[tuple[str, ...], float | list[float]]] = {}
        merge(total, archive)
        merge(total, {k: v for k, v in snap.items() if k not in self.gauges})
        return {name: [(list(k), v) for k, v in rows.items()] for name, rows in total.items()}

    @staticmethod
    def _read(path: Path) -> Snapshot | None:
        try:
            data: Snapshot = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two workers answering scrapes at once must not both fold the same dead worker's file.
        with open(self.folder / _LOCK, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
