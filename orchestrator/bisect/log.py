"""The bisect log: one line per judged point, like ``git bisect log``, that ``orch bisect
--replay FILE`` reads back to repeat the bisection without building (edit a verdict in it to
ask "what if").

    # orch bisect log; replay: orch bisect --replay FILE
    start {"patchset": "largepage", "variant": "largepage", "good": "...", "bad": "...", "project": null}
    manifest 0123abcd... bad fail (vmm-allocation)
    project projects/seL4_projects_libs 89ab... skip build-failed
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.bisect.record import MANIFEST_LEVEL, PROJECT_LEVEL, StepRecord
from orchestrator.bisect.search import VERDICTS
from orchestrator.errors import InputError

HEADER = "# orch bisect log; replay: orch bisect --replay FILE"


def key(level: str, project: str | None, rev: str) -> str:
    """How a point is named in the log (and looked up on replay)."""
    return f"{level} {project} {rev}" if level == PROJECT_LEVEL else f"{level} {rev}"


@dataclass
class BisectLog:
    """The arguments a bisection started with and every verdict, in order."""

    start: dict[str, Any]
    verdicts: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (verdict, cause)

    def lookup(self, level: str, project: str | None, rev: str) -> tuple[str, str] | None:
        return self.verdicts.get(key(level, project, rev))


class LogWriter:
    """Appends to the log as steps finish, so an interrupted bisection leaves a usable log."""

    def __init__(self, path: Path, start: Mapping[str, Any], command: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        arguments = json.dumps(dict(start), sort_keys=True)
        path.write_text(f"{HEADER}\n# {_one_line(command)}\nstart {arguments}\n")

    def step(self, step: StepRecord) -> None:
        line = f"{key(step.level, step.project, step.rev)} {step.verdict} {_one_line(step.cause)}".rstrip()
        comment = f"  # {step.number}: {_one_line(step.subject)[:60]}; {step.built}"
        with open(self.path, "a") as handle:
            handle.write(line + comment + "\n")

    def comment(self, text: str) -> None:
        with open(self.path, "a") as handle:
            handle.write(f"# {_one_line(text)}\n")


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("#", "")


def read_log(path: Path) -> BisectLog:
    """Parse a bisect log; one InputError naming the line at fault."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"--replay {path}: {exc.strerror}") from None
    start: dict[str, Any] | None = None
    verdicts: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if line.startswith("start "):
            try:
                start = json.loads(line.removeprefix("start "))
            except ValueError:
                raise InputError(f"{where}: the start line is not JSON") from None
            continue
        words = line.split()
        size = 4 if words[0] == PROJECT_LEVEL else 3
        level_ok = words[0] in (MANIFEST_LEVEL, PROJECT_LEVEL)
        if not level_ok or len(words) < size or words[size - 1] not in VERDICTS:
            raise InputError(f"{where}: expected 'manifest REV VERDICT [CAUSE]' or "
                             f"'project PATH REV VERDICT [CAUSE]', got: {line[:80]}")
        verdicts[" ".join(words[: size - 1])] = (words[size - 1], " ".join(words[size:]))
    if not isinstance(start, dict):
        raise InputError(f"{path}: not an orch bisect log (no start line)")
    return BisectLog(start, verdicts)
