"""Tests for gateway.policy.watch: good changes are applied, broken ones logged and the last good kept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.policy.loader import LoadedPolicy, load_policy
from gateway.policy.watch import PolicyWatcher

LOGGER = "routeway.test.policy_watch"


def policy_text(objective: str) -> str:
    return f"""\
backends:
  local:
    provider: openai
    base_url: http://localhost:8000/v1
    models:
      mistral-7b: {{id: mistral-7b-instruct}}
routes:
  - name: default
    objective: {objective}
"""


def objective_of(loaded: LoadedPolicy) -> str:
    return loaded.policy.routes[0].objective


async def eventually(write: Callable[[], object], done: Callable[[], bool], timeout: float = 4.0) -> None:
    """Write, then wait for `done`; rewrite now and then in case the watch was not yet in place."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        write()
        for _ in range(20):
            await asyncio.sleep(0.05)
            if done():
                return
    raise AssertionError("timed out waiting for the watcher")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert task.cancelled()


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder"])
def test_watch_applies_good_changes_and_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, as_folder: bool
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    file = tmp_path / "policy.yaml"
    file.write_text(policy_text("cheapest"))
    seen: list[LoadedPolicy] = []
    watcher = PolicyWatcher(tmp_path if as_folder else file, seen.append, logging.getLogger(LOGGER))

    def errors() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.ERROR]

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await eventually(lambda: None, lambda: len(seen) == 1)  # the catch-up load at start
            assert objective_of(seen[0]) == "cheapest"

            await eventually(lambda: file.write_text(policy_text("fastest")), lambda: len(seen) == 2)
            assert objective_of(seen[-1]) == "fastest"
            assert any(r.getMessage().startswith("policy reloaded from ") for r in caplog.records)

            await eventually(lambda: file.write_text(policy_text("quickest")), lambda: bool(errors()))
            await asyncio.sleep(0.2)
            assert len(seen) == 2
            assert watcher.current is seen[-1]
            assert objective_of(seen[-1]) == "fastest"
            message = errors()[0].getMessage()
            assert str(file) in message and "routes[0].objective" in message and "'cheapest'" in message

            await eventually(lambda: file.write_text(policy_text("greenest")), lambda: len(seen) == 3)
            assert objective_of(seen[-1]) == "greenest"
            assert watcher.current is seen[-1]
        finally:
            await stop(task)

    asyncio.run(scenario())


def test_reload_once_skips_unchanged_and_rejects_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(policy_text("cheapest"))
    initial = load_policy(file)
    seen: list[LoadedPolicy] = []
    watcher = PolicyWatcher(file, seen.append, logging.getLogger(LOGGER), current=initial)

    assert asyncio.run(watcher.reload_once()) == initial
    assert seen == []

    file.write_text("routes: [\n")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert asyncio.run(watcher.reload_once()) is None
    assert seen == [] and watcher.current is initial
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "line 2, column 1" in caplog.records[0].getMessage()


def test_failing_on_change_does_not_replace_the_current_policy(tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(policy_text("cheapest"))

    def refuse(_new: LoadedPolicy) -> None:
        raise RuntimeError("not now")

    watcher = PolicyWatcher(file, refuse, logging.getLogger(LOGGER))
    with pytest.raises(RuntimeError):
        asyncio.run(watcher.reload_once())
    assert watcher.current is None


def test_run_survives_a_failing_on_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(policy_text("cheapest"))
    calls: list[LoadedPolicy] = []

    def flaky(new: LoadedPolicy) -> None:
        calls.append(new)
        if len(calls) == 1:
            raise RuntimeError("first one fails")

    watcher = PolicyWatcher(file, flaky, logging.getLogger(LOGGER))

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await eventually(
                lambda: file.write_text(policy_text("fastest")), lambda: watcher.current is not None
            )
        finally:
            await stop(task)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        asyncio.run(scenario())
    assert "failed; keeping the last good one" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None


def test_a_change_in_an_included_file_in_another_folder_is_applied(tmp_path: Path) -> None:
    """The watcher watches the folders of the files the policy includes, and starts watching a folder an
    include names once a reload brings it in."""
    common = tmp_path / "common"
    common.mkdir()
    base = common / "base.yaml"
    base.write_text(policy_text("cheapest"))
    later = tmp_path / "later"
    later.mkdir()
    extra = later / "extra.yaml"
    extra.write_text("routes: [{name: default, objective: balanced}]\n")
    root = tmp_path / "conf"
    root.mkdir()
    file = root / "policy.yaml"
    file.write_text("include: [../common/base.yaml]\n")
    seen: list[LoadedPolicy] = []
    watcher = PolicyWatcher(file, seen.append, logging.getLogger(LOGGER))

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await eventually(lambda: None, lambda: len(seen) == 1)
            assert objective_of(seen[0]) == "cheapest" and base.resolve() in {
                f.resolve() for f in seen[0].files
            }

            await eventually(lambda: base.write_text(policy_text("fastest")), lambda: len(seen) == 2)
            assert objective_of(seen[-1]) == "fastest"

            # A new include in a folder not watched so far: its later edits are noticed too.
            include = "include: [../common/base.yaml, ../later/extra.yaml]\n"
            await eventually(lambda: file.write_text(include), lambda: len(seen) == 3)
            assert objective_of(seen[-1]) == "balanced"
            edited = "routes: [{name: default, objective: greenest}]\n"
            await eventually(lambda: extra.write_text(edited), lambda: len(seen) == 4)
            assert objective_of(seen[-1]) == "greenest"
        finally:
            await stop(task)

    asyncio.run(scenario())
