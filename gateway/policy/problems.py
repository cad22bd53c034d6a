"""What is wrong with a policy: each problem with its file, key path and reason."""

from __future__ import annotations

from dataclasses import dataclass


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


def dotted(loc: tuple[int | str, ...]) -> str:
    """A key path as users write it: backends.groq.models[0]."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out
