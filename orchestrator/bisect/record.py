"""``bisect.json``: what a bisection found and every step it took (schema in the README)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import EXIT_CANNOT_TEST, EXIT_FAIL, EXIT_OK, EXIT_USAGE
from orchestrator.ui import to_jsonable

SCHEMA = 1
MANIFEST_LEVEL, PROJECT_LEVEL = "manifest", "project"

EXIT_CODES = {"found": EXIT_OK, "no-regression": EXIT_FAIL, "good-is-bad": EXIT_USAGE,
              "ambiguous": EXIT_CANNOT_TEST, "all-skipped": EXIT_CANNOT_TEST}


@dataclass
class StepRecord:
    """One point judged: which, the verdict and cause, and what it cost."""

    number: int
    level: str  # manifest | project
    index: int  # the point's position in its level (0: the good end)
    rev: str  # the manifest commit, or the project commit the state ends on
    subject: str
    project: str | None = None
    date: str | None = None
    verdict: str = ""  # good | bad | skip
    cause: str = ""
    built: str = "-"  # built | cached | failed | replayed | - (nothing built: a patch did not apply)
    boot: str = "-"  # ran | cached | -
    image: str | None = None  # the build image the point used
    image_rule: str | None = None  # the [[build.images]] rule that chose it, or "default"
    seconds: float = 0.0
    build_seconds: float | None = None
    boot_seconds: float | None = None
    detail: str | None = None  # why it was skipped, in one line
    results: str | None = None  # the step's `orch build` reports
    pins: dict[str, str] = field(default_factory=dict)  # path -> the exact commit built


@dataclass
class Snapshot:
    rev: str
    date: str
    subject: str


@dataclass
class Culprit:
    project: str
    commit: str
    subject: str
    author: str
    date: str
    url: str | None = None  # the commit on GitHub, when the remote is there


@dataclass
class LevelSummary:
    level: str
    points: int  # N: candidates after the good end
    status: str  # found | no-regression | good-is-bad | ambiguous | all-skipped
    steps: int = 0
    builds: int = 0  # fresh builds (built or failed), not cached ones
    skips: int = 0
    bound: int = 0  # ceil(log2 N): the steps a binary search takes without skips
    suspects: list[str] = field(default_factory=list)  # ambiguous: every point that may be first bad


@dataclass
class BisectRecord:
    patchset: str
    variant: str
    good: str
    bad: str
    project: str | None = None
    schema: int = SCHEMA
    id: str = ""
    status: str = ""
    exit_code: int = EXIT_OK
    started: str = ""
    finished: str = ""
    command: list[str] = field(default_factory=list)
    replayed: bool = False
    first_bad_manifest: Snapshot | None = None
    last_good_manifest: Snapshot | None = None
    culprit: Culprit | None = None
    levels: list[LevelSummary] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    reproduce: str | None = None
    log: str | None = None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(to_jsonable(self), indent=2) + "\n")
        tmp.replace(path)
