"""Hot reload of the routing policy: watch its file or folder, apply good changes, keep the last good one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from gateway.policy.loader import YAML_SUFFIXES, LoadedPolicy, PolicyError, load_policy


class PolicyWatcher:
    """Reloads the policy when its files change; a policy that fails to load never replaces a good one."""

    def __init__(
        self,
        path: Path,
        on_change: Callable[[LoadedPolicy], None],
        logger: logging.Logger,
        *,
        current: LoadedPolicy | None = None,
    ) -> None:
        """`current` is the policy already in force, so that an unchanged reload does not call `on_change`."""
        self._path = path
        self._on_change = on_change
        self._logger = logger
        self._current = current
        self._folder = path.is_dir()

    @property
    def current(self) -> LoadedPolicy | None:
        """The last good policy: the one passed at construction or last handed to `on_change`."""
        return self._current

    async def run(self) -> None:
        """Watch until cancelled; a failed reload is logged and the watch goes on."""
        # Catch up first: the files may have changed since `current` was loaded.
        await self._reload_logged()
        while True:
            folders = self._folders()
            changes = awatch(*folders, watch_filter=self._is_relevant, recursive=False)
            async with contextlib.aclosing(changes):
                async for _changes in changes:
                    await self._reload_logged()
                    if self._folders() != folders:
                        break  # an include was added or dropped: watch the folders of the files now read
            await self._reload_logged()  # what changed while the watch restarted

    def _folders(self) -> tuple[Path, ...]:
        """The policy's folder (a file's parent) and those of the files it includes."""
        files = self._current.files if self._current is not None else ()
        found = {self._path.resolve() if self._folder else self._path.resolve().parent}
        found.update(f.resolve().parent for f in files)
        # A folder removed since the last good load is not watched (watching it would end the watch).
        return tuple(sorted(f for f in found if f.is_dir()))

    async def reload_once(self) -> LoadedPolicy | None:
        """Load the policy now; return it if valid (applying it if changed), else log why and return None."""
        try:
            # Off the event loop: reading and validating files must not stall requests in flight.
            new = await asyncio.to_thread(load_policy, self._path)
        except PolicyError as exc:
            for problem in exc.problems:
                self._logger.error(
                    "policy reload rejected, keeping the last good one: %s: %s: %s",
                    problem.file,
                    problem.path,
                    problem.reason,
                )
            return None
        if self._current is None or new.fingerprint != self._current.fingerprint:
            self._on_change(new)
            # Only once on_change succeeded is the new policy the one in force.
            self._current = new
            self._logger.info("policy reloaded from %s (fingerprint %s)", self._path, new.fingerprint)
        return new

    async def _reload_logged(self) -> None:
        try:
            await self.reload_once()
        except Exception:
            # A bug in on_change or the loader must not end hot reload for the life of the process.
            self._logger.exception("policy reload from %s failed; keeping the last good one", self._path)

    def _is_relevant(self, _change: Change, changed: str) -> bool:
        name = Path(changed).name
        # Kubernetes mounts ConfigMaps by swapping a `..data` symlink, so the YAML files' own paths
        # never change; such names count as a change too.
        if name.startswith(".."):
            return True
        # Any policy file in a watched folder: the policy's own, one it includes, or one an include being
        # fixed will name. A reload that changes nothing is cheap: its fingerprint shows nothing to apply.
        return name.endswith(YAML_SUFFIXES) and not name.startswith(".")
