"""Hot reload from a Kubernetes ConfigMap volume: the kubelet swaps a `..data` symlink, never the files."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from pathlib import Path

import pytest

from gateway.policy.loader import LoadedPolicy
from gateway.policy.watch import PolicyWatcher
from tests.unit.policy.test_policy_watch import eventually, objective_of, policy_text, stop

LOGGER = "routeway.test.policy_watch_configmap"
_stamps = itertools.count()


class ConfigMapVolume:
    """A folder laid out and updated the way the kubelet's AtomicWriter does it.

    `..<timestamp>/` holds the files, `..data` points at it, and each visible name is a symlink
    `name -> ..data/name`. An update writes a new timestamped folder, points `..data_tmp` at it, renames
    `..data_tmp` over `..data` (the one atomic step) and removes the old folder: the visible symlinks
    themselves never change.
    """

    def __init__(self, root: Path, files: dict[str, str]) -> None:
        self.root = root
        self._current: Path | None = None
        self.update(files)

    def update(self, files: dict[str, str]) -> None:
        stamp = self.root / f"..2026_12_02_15_00_00.{next(_stamps):09d}"
        stamp.mkdir()
        for name, text in files.items():
            (stamp / name).write_text(text)
        tmp = self.root / "..data_tmp"
        os.symlink(stamp.name, tmp)
        os.replace(tmp, self.root / "..data")
        for name in files:
            visible = self.root / name
            if not visible.is_symlink():
                os.symlink(f"..data/{name}", visible)
        if self._current is not None:
            for child in self._current.iterdir():
                child.unlink()
            self._current.rmdir()
        self._current = stamp


@pytest.mark.parametrize("as_folder", [True, False], ids=["folder", "file"])
def test_symlink_swaps_reload_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, as_folder: bool
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    volume = ConfigMapVolume(tmp_path, {"routeway.yaml": policy_text("cheapest")})
    seen: list[LoadedPolicy] = []
    path = tmp_path if as_folder else tmp_path / "routeway.yaml"
    watcher = PolicyWatcher(path, seen.append, logging.getLogger(LOGGER))
    # Each update is a new, distinct policy, so a swap repeated by `eventually` is harmless.
    versions = itertools.count()

    def swap(objective: str) -> None:
        text = policy_text(objective) + f"# version {next(versions)}\n"
        volume.update({"routeway.yaml": text})

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await eventually(lambda: None, lambda: len(seen) == 1)
            assert objective_of(seen[0]) == "cheapest"

            await eventually(lambda: swap("fastest"), lambda: objective_of(seen[-1]) == "fastest")

            errors = lambda: [r for r in caplog.records if r.levelno == logging.ERROR]  # noqa: E731
            await eventually(lambda: swap("quickest"), lambda: bool(errors()))
            assert objective_of(watcher.current or seen[0]) == "fastest"
            assert "routes[0].objective" in errors()[0].getMessage()

            await eventually(lambda: swap("greenest"), lambda: objective_of(seen[-1]) == "greenest")
            assert watcher.current is seen[-1]
        finally:
            await stop(task)

    asyncio.run(scenario())


def test_a_file_added_to_the_configmap_is_loaded(tmp_path: Path) -> None:
    """A new key of the ConfigMap appears as a new visible symlink after the swap: the folder picks it up."""
    volume = ConfigMapVolume(tmp_path, {"routeway.yaml": policy_text("cheapest")})
    seen: list[LoadedPolicy] = []
    watcher = PolicyWatcher(tmp_path, seen.append, logging.getLogger(LOGGER))
    extra = "backends:\n  other:\n    provider: openai\n    base_url: http://localhost:9000/v1\n"
    extra += "    models:\n      other-model: {id: other}\n"

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await eventually(lambda: None, lambda: len(seen) == 1)
            files = {"routeway.yaml": policy_text("cheapest"), "more.yaml": extra}
            await eventually(lambda: volume.update(files), lambda: "other" in seen[-1].policy.backends)
        finally:
            await stop(task)

    asyncio.run(scenario())
