"""The search itself, free of builds and boots: the smallest passing value by halving, and
the places where the outcomes contradict monotonicity (a pass below a fail)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.sweep.plan import ProbeRecord, Search

Probe = Callable[[int], ProbeRecord]


@dataclass
class Found:
    minimum: int | None
    below: ProbeRecord | None  # the failing probe one step below the minimum, if probed
    notes: list[str] = field(default_factory=list)


def minimize(search: Search, probe: Probe) -> Found:
    """The smallest value in ``(lo, hi]`` (steps of ``step`` from ``lo``) whose probe passes.

    ``hi`` is probed first (if it fails, nothing in the range is taken to pass); then the
    interval (known fail, known pass) is halved, ``lo`` itself being assumed to fail, so at
    most ``ceil(log2((hi - lo) / step)) + 1`` probes. Only when the answer is ``lo + step`` is
    ``lo`` probed too, to tell whether the minimum is at or below ``lo``."""
    top = probe(search.hi)
    if not top.ok:
        return Found(None, top, [f"fails even at the top of the range ({search.show(search.hi)})"])
    fail, passed = search.lo, search.hi
    below: ProbeRecord | None = None
    while passed - fail > search.step:
        middle = fail + (passed - fail) // search.step // 2 * search.step
        record = probe(middle)
        if record.ok:
            passed = middle
        else:
            fail, below = middle, record
    if below is None:
        record = probe(search.lo)
        if record.ok:
            return Found(search.lo, None, [f"passes at the bottom of the range ({search.show(search.lo)}): "
                                           "the minimum may be lower"])
        below = record
    return Found(passed, below)


def violations(records: Sequence[ProbeRecord], param: str) -> list[tuple[int, int]]:
    """Pairs (passing value, higher failing value) of ``param`` among probes that differ in
    nothing else: each is a contradiction of the monotonicity the search assumes. Builds that
    broke are left out (they say nothing about the threshold)."""
    def others(r: ProbeRecord) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((k, v) for k, v in r.settings.items() if k != param))

    judged = [r for r in records if param in r.settings and r.verdict != "build-failed"]
    found: list[tuple[int, int]] = []
    for group in {others(r) for r in judged}:
        same = sorted((r for r in judged if others(r) == group), key=lambda r: r.settings[param])
        passes = [r.settings[param] for r in same if r.ok]
        fails = [r.settings[param] for r in same if not r.ok]
        for value in passes:
            higher = [f for f in fails if f > value]
            if higher:
                found.append((value, max(higher)))
    return sorted(set(found))
