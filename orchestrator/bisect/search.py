"""The bisection itself, over points ``0..n`` of one level (0 good, n bad), with skips.

The search never builds anything: it asks a *batch probe* — a function from a batch of point
indices to their verdicts — so the same code runs one probe at a time (``width=1``, plain
binary search) or a k-ary search over P workers (``width=P``: P points splitting the range
into P+1 parts, probed together; issue 16 plugs a cluster in behind the probe function).

Rules, as ``git bisect``'s: the first bad point is the lowest index judged bad above the
highest index judged good below it; a ``skip`` is never chosen again, and the next probe is
the untested point nearest the middle. The endpoints are assumed (good at 0, bad at n) and
only probed when the answer rests on them: the bad end when nothing probed was bad, the good
end when nothing probed was good.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

GOOD, BAD, SKIP = "good", "bad", "skip"
VERDICTS = (GOOD, BAD, SKIP)

FOUND = "found"  # one first bad point
NO_REGRESSION = "no-regression"  # the bad end is good
GOOD_IS_BAD = "good-is-bad"  # the good end is bad: the regression is older than the range
AMBIGUOUS = "ambiguous"  # skipped points hide the boundary


@dataclass(frozen=True)
class Verdict:
    """What the oracle said about one point; ``detail`` is the oracle's own record."""

    verdict: str  # good | bad | skip
    cause: str = ""
    detail: object = None


BatchProbe = Callable[[Sequence[int]], Mapping[int, Verdict]]
"""Judge every point of a batch (in any order, at once if it can); one verdict per index."""


@dataclass(frozen=True)
class Progress:
    step: int  # batches asked so far, this one included
    batch: tuple[int, ...]
    low: int  # highest index known good
    high: int  # lowest index known bad
    left: int  # untested, unskipped points between them
    steps_to_go: int  # estimated batches after this one


@dataclass
class SearchResult:
    status: str  # FOUND | NO_REGRESSION | GOOD_IS_BAD | AMBIGUOUS
    last_good: int
    first_bad: int | None
    candidates: tuple[int, ...] = ()  # AMBIGUOUS: every index that may be the first bad one
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # indices in the order they were probed

    @property
    def all_skipped(self) -> bool:
        probed = [self.verdicts[i] for i in self.order]
        return bool(probed) and all(v.verdict == SKIP for v in probed)


def estimate_steps(left: int, width: int = 1) -> int:
    """Batches a search of ``left`` untested points needs without skips (k-ary: log base width+1)."""
    if left <= 0:
        return 0
    return math.ceil(math.log(left + 1, width + 1) - 1e-9)


def _bounds(n: int, verdicts: Mapping[int, Verdict]) -> tuple[int, int]:
    """(highest good index below the lowest bad one, lowest bad index); 0 and n as assumed
    unless judged otherwise (a skipped endpoint keeps its assumption)."""
    high = min([i for i, v in verdicts.items() if v.verdict == BAD] + [n])
    low = max([i for i, v in verdicts.items() if v.verdict == GOOD and i < high] + [0])
    return low, high


def pick(low: int, high: int, untested: Sequence[int], width: int) -> list[int]:
    """Up to ``width`` untested points nearest the ``width`` cut points splitting (low, high)
    evenly (ties to the lower index)."""
    chosen: list[int] = []
    for j in range(1, width + 1):
        target = low + (high - low) * j / (width + 1)
        left = [i for i in untested if i not in chosen]
        if not left:
            break
        chosen.append(min(left, key=lambda i: (abs(i - target), i)))
    return sorted(chosen)


def search(n: int, probe: BatchProbe, *, width: int = 1, known: Mapping[int, Verdict] | None = None,
           on_progress: Callable[[Progress], None] | None = None) -> SearchResult:
    """Find the first bad point among ``1..n`` (``0`` is good, ``n`` bad, both assumed unless
    ``known``). ``probe`` is called with batches of at most ``width`` indices."""
    if n < 1:
        raise ValueError("a search needs at least one point after the good one")
    verdicts: dict[int, Verdict] = dict(known or {})
    order: list[int] = []
    step = 0
    while True:
        low, high = _bounds(n, verdicts)
        untested = [i for i in range(low + 1, high) if i not in verdicts]
        batch = pick(low, high, untested, width)
        if not batch:
            batch = _endpoint_to_check(n, low, high, verdicts)
        if not batch:
            break
        step += 1
        if on_progress is not None:
            left = len(untested)
            on_progress(Progress(step, tuple(batch), low, high, left,
                                 max(0, estimate_steps(left, width) - 1)))
        answers = probe(batch)
        for index in batch:
            verdicts[index] = answers[index]
            order.append(index)
    return _result(n, verdicts, order)


def _endpoint_to_check(n: int, low: int, high: int, verdicts: Mapping[int, Verdict]) -> list[int]:
    """The assumed endpoint the answer rests on, if it was never probed."""
    inner = [v.verdict for i, v in verdicts.items() if 0 < i < n]
    if high == n and n not in verdicts and BAD not in inner:
        return [n]
    if low == 0 and 0 not in verdicts and GOOD not in inner and (BAD in inner or _v(verdicts, n) == BAD):
        return [0]
    return []


def _v(verdicts: Mapping[int, Verdict], index: int) -> str:
    found = verdicts.get(index)
    return found.verdict if found else ""


def _result(n: int, verdicts: dict[int, Verdict], order: list[int]) -> SearchResult:
    if _v(verdicts, n) == GOOD:
        return SearchResult(NO_REGRESSION, n, None, (), verdicts, order)
    if _v(verdicts, 0) == BAD:
        return SearchResult(GOOD_IS_BAD, 0, None, (), verdicts, order)
    low, high = _bounds(n, verdicts)
    if high == low + 1 and _v(verdicts, high) != SKIP:  # a skipped bad end was never confirmed
        return SearchResult(FOUND, low, high, (high,), verdicts, order)
    return SearchResult(AMBIGUOUS, low, None, tuple(range(low + 1, high + 1)), verdicts, order)
