"""The bisection over one level's points, with a scripted oracle: binary and k-ary, skips,
the endpoints checked only when the answer rests on them, and the number of probes; and the
pure parts around it: level 2's ordering, GitHub commit URLs, era-matched image rules."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest

from orchestrator.bisect.candidates import Change, Commit, github_url, interleave
from orchestrator.bisect.search import (
    AMBIGUOUS,
    BAD,
    FOUND,
    GOOD,
    GOOD_IS_BAD,
    NO_REGRESSION,
    SKIP,
    Progress,
    Verdict,
    estimate_steps,
    search,
)
from orchestrator.build.eras import ImageChoice, choose_image, parse_rules
from orchestrator.errors import InputError


class Oracle:
    """Points >= first_bad are bad; ``skips`` cannot be tested."""

    def __init__(self, first_bad: int | None, skips: Sequence[int] = ()) -> None:
        self.first_bad, self.skips = first_bad, set(skips)
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, batch: Sequence[int]) -> Mapping[int, Verdict]:
        self.batches.append(tuple(batch))
        out = {}
        for i in batch:
            if i in self.skips:
                out[i] = Verdict(SKIP, "build-failed")
            elif self.first_bad is not None and i >= self.first_bad:
                out[i] = Verdict(BAD, "vmm-allocation")
            else:
                out[i] = Verdict(GOOD)
        return out

    @property
    def probes(self) -> int:
        return sum(len(b) for b in self.batches)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 16, 33])
def test_every_first_bad_found_within_log2_probes(n: int) -> None:
    for first_bad in range(1, n + 1):
        oracle = Oracle(first_bad)
        result = search(n, oracle)
        assert result.status == FOUND and result.first_bad == first_bad, (n, first_bad)
        # the endpoints are probed only when the answer rests on them
        extra = (first_bad == n) + (first_bad == 1)
        assert oracle.probes <= math.ceil(math.log2(n)) + extra, (n, first_bad, oracle.batches)


def test_skips_cost_one_probe_each_and_are_never_retried() -> None:
    oracle = Oracle(5, skips=[3])
    result = search(10, oracle)
    assert result.status == FOUND and result.first_bad == 5 and result.last_good == 4
    assert [b[0] for b in oracle.batches] == [5, 2, 3, 4]
    assert oracle.probes <= math.ceil(math.log2(10)) + 1
    assert result.verdicts[3].verdict == SKIP


def test_level_two_shape_with_a_broken_build_in_the_way() -> None:
    oracle = Oracle(5, skips=[3])
    result = search(7, oracle, known={0: Verdict(GOOD), 7: Verdict(BAD)})
    assert result.first_bad == 5 and [b[0] for b in oracle.batches] == [3, 4, 5]


def test_skip_next_to_the_boundary_is_ambiguous() -> None:
    oracle = Oracle(5, skips=[4])
    result = search(8, oracle)
    assert result.status == AMBIGUOUS and result.candidates == (4, 5)


def test_a_bad_end_that_cannot_be_tested_is_not_a_culprit() -> None:
    oracle = Oracle(1, skips=[1])
    result = search(1, oracle)
    assert oracle.batches == [(1,)]
    assert result.status == AMBIGUOUS and result.first_bad is None and result.all_skipped


def test_no_regression_when_the_bad_end_is_good() -> None:
    oracle = Oracle(None)
    result = search(6, oracle)
    assert result.status == NO_REGRESSION and result.first_bad is None
    assert oracle.batches[-1] == (6,)


def test_good_end_checked_when_everything_is_bad() -> None:
    oracle = Oracle(0)
    result = search(6, oracle)
    assert result.status == GOOD_IS_BAD and oracle.batches[-1] == (0,)


def test_everything_skipped() -> None:
    oracle = Oracle(3, skips=range(0, 8))
    result = search(7, oracle)
    assert result.status == AMBIGUOUS and result.all_skipped
    assert result.candidates == tuple(range(1, 8))


@pytest.mark.parametrize("width", [2, 3, 4])
def test_k_ary_batches(width: int) -> None:
    n = 40
    for first_bad in range(2, n):
        oracle = Oracle(first_bad)
        result = search(n, oracle, width=width)
        assert result.first_bad == first_bad
        assert all(len(b) <= width for b in oracle.batches)
        assert len(oracle.batches) <= estimate_steps(n - 1, width) + 1


def test_progress_reports_candidates_left() -> None:
    seen: list[Progress] = []
    search(16, Oracle(9), on_progress=seen.append)
    assert seen[0].left == 15 and seen[0].step == 1 and seen[0].steps_to_go == 3
    assert [p.step for p in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].left < seen[0].left


# --- level 2's ordering, GitHub URLs, era rules --------------------------------------------------

def _change(path: str, sha: str, time: int) -> Change:
    return Change(path, Commit(sha, f"{path} {sha}", "A <a@b>", "2024-01-01T00:00:00+00:00", time), None)


def test_changes_interleave_by_time_keeping_each_projects_order() -> None:
    libs = [_change("libs", "l1", 10), _change("libs", "l2", 40), _change("libs", "l3", 20)]
    kernel = [_change("kernel", "k1", 15), _change("kernel", "k2", 30)]
    removed = [Change("old", None, None)]
    order = [c.sha or "removed" for c in interleave([libs, kernel, removed])]
    assert order == ["removed", "l1", "k1", "k2", "l2", "l3"]  # l3 (older clock) never before l2


@pytest.mark.parametrize(("remote", "url"), [
    ("https://github.com/seL4/seL4_projects_libs.git", "https://github.com/seL4/seL4_projects_libs/commit/abc"),
    ("git@github.com:seL4/seL4.git", "https://github.com/seL4/seL4/commit/abc"),
    ("ssh://git@github.com/seL4/camkes-tool", "https://github.com/seL4/camkes-tool/commit/abc"),
    ("https://gitlab.com/seL4/seL4.git", None),
    ("/srv/git/seL4.git", None),
])
def test_github_url(remote: str, url: str | None) -> None:
    assert github_url(remote, "abc") == url


def test_era_rules_first_that_holds_wins() -> None:
    rules = parse_rules([
        {"image": "old", "before": "2024-01-01"},
        {"image": "deps3", "file": "tools/seL4/python-deps/setup.py", "contains": "version='0.3"},
        {"image": "re", "file": "kernel/VERSION", "matches": r"^13\."},
    ], "patchset.toml: [build]")
    files = {"tools/seL4/python-deps/setup.py": "setup(version='0.3.1')", "kernel/VERSION": "13.0.0\n"}
    read = files.get
    assert choose_image(rules, "default", "2023-06-01T10:00:00+00:00", read).image == "old"
    assert choose_image(rules, "default", "2024-01-01T00:00:00+00:00", read).image == "deps3"  # not before
    chosen = choose_image(rules, "default", "2024-06-01T10:00:00+00:00", read)
    assert chosen.image == "deps3" and chosen.rule.startswith("images[2]")
    assert choose_image(rules, "default", "2024-06-01", {"kernel/VERSION": "13.1"}.get).image == "re"
    no_files: dict[str, str] = {}
    assert choose_image(rules, "default", "2024-06-01", no_files.get) == ImageChoice("default", "default")


@pytest.mark.parametrize(("rule", "message"), [
    ({"image": "x", "before": "last year"}, "not a date"),
    ({"image": "x", "contains": "y"}, "need a 'file'"),
    ({"image": "x", "file": "a/b"}, "needs 'contains' or 'matches'"),
    ({"image": "x", "colour": "red"}, "unknown key 'colour'"),
    ({"image": "x", "file": "a", "matches": "("}, "matches:"),
])
def test_era_rules_bad_input(rule: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match="images\\[1\\]") as caught:
        parse_rules([rule], "patchset.toml: [build]")
    assert message in caught.value.message
