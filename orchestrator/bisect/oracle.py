"""Judging one point: build it (and boot it) through the normal `orch build` job, then say
good, bad or skip.

The oracle is the variant's expectation (met: good; without one, a pass is good), or a
``--test CMD`` run after the build with git bisect's convention (0 good, 125 skip, 1-127
bad, above 127 abort). A point whose patchsets do not apply (``git am --3way``) is skipped,
one that does not build is skipped (``build_failure="bad"`` makes it bad), an infrastructure
error is tried once more and then skipped; ``retries`` boots a point that many times and
takes the majority. Builds and boots go through the job's caches, and every point builds in
the same variant tree, so ninja rebuilds only what changed between steps.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.bisect.search import BAD, GOOD, SKIP, Verdict
from orchestrator.errors import InfraError, InputError, OrchError
from orchestrator.job import JobOptions, JobOutcome, run_job
from orchestrator.report import model as rep
from orchestrator.ui import UI
from orchestrator.workspace.point import Point

BUILD_FAILED = "build-failed"
DOES_NOT_APPLY = "patchset-does-not-apply"
INFRA = "infra-error"


class Abort(OrchError):
    """``--test`` exited above 127: stop the bisection (git bisect's convention)."""


@dataclass(frozen=True)
class OracleSettings:
    """What every step of one bisection shares."""

    patchset: str
    variant: str
    workspace: Path
    patchset_dirs: tuple[Path, ...] = ()
    executor: str = "docker"
    boot_in: str = "auto"
    cmake: tuple[str, ...] = ()
    timeout: float | None = None
    test: str | None = None
    build_failure: str = "skip"  # skip | bad
    retries: int = 1
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class StepOutcome:
    """One point's verdict and what it took (``bisect.json``'s step, less the point)."""

    verdict: str
    cause: str = ""
    build: str = "-"  # built | cached | failed | - (nothing built)
    boot: str = "-"  # ran | cached | -
    image: str | None = None  # the build image used
    image_rule: str | None = None
    seconds: float = 0.0
    build_seconds: float | None = None
    boot_seconds: float | None = None
    results: str | None = None
    detail: str | None = None  # the one line behind a skip
    attempts: int = 1
    votes: list[str] = field(default_factory=list)

    def as_verdict(self) -> Verdict:
        return Verdict(self.verdict, self.cause, self)


class PipelineOracle:
    """Judges points by running `orch build` on them (one variant)."""

    def __init__(self, settings: OracleSettings, ui: UI) -> None:
        self.settings = settings
        self.ui = ui

    def judge(self, point: Point, image: str | None, results: Path) -> StepOutcome:
        started = time.monotonic()
        outcome = self._with_infra_retry(point, image, results)
        outcome.seconds = round(time.monotonic() - started, 3)
        outcome.results = str(results)
        return outcome

    def _with_infra_retry(self, point: Point, image: str | None, results: Path) -> StepOutcome:
        problem = ""
        for attempt in (1, 2):
            try:
                outcome = self._majority(point, image, results)
                outcome.attempts = attempt
                return outcome
            except InfraError as error:
                problem = error.message
                self.ui.warn(f"infrastructure error, {'trying once more' if attempt == 1 else 'skipping'}: "
                             f"{problem}")
        return StepOutcome(SKIP, INFRA, detail=problem, attempts=2)

    def _majority(self, point: Point, image: str | None, results: Path) -> StepOutcome:
        votes: list[StepOutcome] = []
        for attempt in range(max(1, self.settings.retries)):
            outcome = self._once(point, image, results / f"boot-{attempt + 1}" if attempt else results,
                                 rerun=attempt > 0)
            votes.append(outcome)
            if outcome.verdict == SKIP or outcome.build == "failed" or self.settings.test:
                break  # nothing to vote on: the build decided, or the test is not a boot
        if len(votes) == 1:
            return votes[0]
        tally = Counter(v.verdict for v in votes)
        verdict = GOOD if tally[GOOD] > tally[BAD] else BAD
        chosen = next(v for v in votes if v.verdict == verdict)
        return replace(chosen, votes=[v.verdict for v in votes],
                       cause=f"{chosen.cause} ({tally[verdict]}/{len(votes)} boots)".strip())

    def _options(self, point: Point, image: str | None, results: Path, rerun: bool) -> JobOptions:
        s = self.settings
        return JobOptions(variants=(s.variant,), boot=s.test is None, executor=s.executor,
                          toolchain_image=image, reboot=rerun, boot_in=s.boot_in,
                          patchset_dirs=s.patchset_dirs, cmake=s.cmake, timeout=s.timeout,
                          results_dir=results, point=point, three_way=True, reuse_failed_builds=True)

    def _once(self, point: Point, image: str | None, results: Path, *, rerun: bool) -> StepOutcome:
        try:
            done = run_job(self.settings.patchset, self.settings.workspace,
                           self._options(point, image, results, rerun), UI.silent(),
                           reproduce=("orch", "bisect"))
        except InputError as error:  # the patchsets do not apply here, or the point is unreadable
            return StepOutcome(SKIP, DOES_NOT_APPLY, detail=error.message)
        variant = done.report.variants[0]
        built = "cached" if variant.build.cached else "built"
        booted = variant.boot.status if variant.boot.status in ("ran", "cached") else "-"
        outcome = StepOutcome(GOOD, build="failed" if variant.build.status == "failed" else built,
                              boot=booted, image=_build_image(variant), build_seconds=variant.build.seconds,
                              boot_seconds=variant.boot.seconds)
        if variant.build.status == "failed":
            outcome.build = "failed (cached)" if variant.build.cached else "failed"
            outcome.verdict = BAD if self.settings.build_failure == "bad" else SKIP
            outcome.cause, outcome.detail = BUILD_FAILED, variant.build.message
            return outcome
        if self.settings.test is not None:
            return self._run_test(done, variant, outcome)
        if variant.outcome == rep.ERROR:
            raise InfraError(f"could not boot: {variant.boot.message or variant.boot.cause or 'error'}")
        met = variant.outcome in (rep.EXPECTED, rep.PASSED)
        outcome.verdict = GOOD if met else BAD
        cause = f" ({variant.boot.cause})" if variant.boot.cause else ""
        outcome.cause = str(variant.verdict or "") + cause
        return outcome

    def _run_test(self, done: JobOutcome, variant: rep.VariantResult, outcome: StepOutcome) -> StepOutcome:
        assert self.settings.test is not None
        env = {**self.settings.env, "ORCH_IMAGE": variant.build.boot_image or "",
               "ORCH_BUILD_DIR": variant.build.build_dir or "", "ORCH_RESULTS": str(done.directory),
               "ORCH_VARIANT": variant.name, "ORCH_WORKSPACE": str(self.settings.workspace)}
        proc = subprocess.run(["sh", "-c", self.settings.test], cwd=self.settings.workspace, env=env,
                              capture_output=True, text=True, errors="replace")
        (done.directory / "test.log").write_text(proc.stdout + proc.stderr)
        code = proc.returncode
        if code < 0 or code > 127:
            raise Abort(f"--test exited {code}: stopping the bisection (above 127 means abort)",
                        hint=f"its output: {done.directory / 'test.log'}")
        outcome.verdict = GOOD if code == 0 else SKIP if code == 125 else BAD
        outcome.cause = f"test exit {code}"
        return outcome


def _build_image(variant: rep.VariantResult) -> str | None:
    record: dict[str, Any] = variant.build_record or {}
    executor = record.get("executor") or {}
    image = executor.get("image") if isinstance(executor, dict) else None
    return str(image) if image else None
