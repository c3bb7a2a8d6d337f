"""Reading a serial console: rule files, ANSI stripping, incremental verdicts, memory figures.

Rules are data (TOML, one file per platform under ``orchestrator/data/rules/`` plus any the
user names). A :class:`ConsoleMatcher` is fed raw console bytes as they arrive and reports
the first decisive (pass/fail) match the moment its line, or a prompt without a newline, is
printed; it also records milestones and notes. :func:`parse_free` and :func:`parse_meminfo`
turn ``free -m`` and ``/proc/meminfo`` output into numbers.
"""

from __future__ import annotations

import codecs
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.boot.platform import platform_file
from orchestrator.errors import InputError
from orchestrator.shipped import data_file

RuleKind = Literal["pass", "fail", "note", "milestone", "ignore"]
RULE_KINDS: tuple[RuleKind, ...] = ("pass", "fail", "note", "milestone", "ignore")
DECISIVE_KINDS = frozenset({"pass", "fail"})

# CSI sequences (colours, cursor moves), other two-byte ESC sequences, and C0 controls
# except tab: the seL4 kernel colours its messages, QEMU's monitor prints ^A x.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[ -/]*[0-Z\\-~]|[\x00-\x08\x0b-\x1f\x7f]")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences and control characters (tabs kept)."""
    return _ANSI.sub("", text)


@dataclass(frozen=True)
class Rule:
    """One named console rule."""

    name: str
    kind: RuleKind
    pattern: re.Pattern[str]
    cause: str | None = None
    milestone: str | None = None
    partial: bool = False
    source: str = ""

    @property
    def decisive(self) -> bool:
        return self.kind in DECISIVE_KINDS


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules (user rules first, so they can override the platform's) and the
    milestone that marks seL4 as booted."""

    rules: tuple[Rule, ...]
    boot_milestone: str = "sel4-booted"
    sources: tuple[str, ...] = ()

    def with_rules_first(self, other: RuleSet) -> RuleSet:
        return RuleSet(other.rules + self.rules, self.boot_milestone, other.sources + self.sources)


def _rule_from_table(table: dict[str, Any], source: str, index: int) -> Rule:
    where = f"{source}: rule #{index + 1}"
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: missing 'name'")
    where = f"{source}: rule {name!r}"
    kind = table.get("kind")
    if kind not in RULE_KINDS:
        raise InputError(f"{where}: kind must be one of {', '.join(RULE_KINDS)}, not {kind!r}")
    literal, regex = table.get("match"), table.get("regex")
    if (literal is None) == (regex is None):
        raise InputError(f"{where}: give exactly one of 'match' (text) or 'regex'")
    try:
        pattern = re.compile(re.escape(literal) if literal is not None else str(regex))
    except re.error as err:
        raise InputError(f"{where}: bad regex: {err}") from None
    cause = table.get("cause")
    if kind == "fail" and not cause:
        cause = name
    unknown = set(table) - {"name", "kind", "match", "regex", "cause", "milestone", "partial"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    return Rule(
        name=name, kind=kind, pattern=pattern, cause=cause, milestone=table.get("milestone"),
        partial=bool(table.get("partial", False)), source=source,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: rule file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML: {err}") from None


def load_rules(path: Path) -> RuleSet:
    """The rules of one TOML file (``[[rule]]`` tables and an optional ``boot_milestone``;
    rule files written for older orch versions keep it in a ``[platform]`` table)."""
    data = _read_toml(path)
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise InputError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    rules = tuple(_rule_from_table(t, str(path.name), i) for i, t in enumerate(tables))
    legacy = data.get("platform", {})
    boot = data.get("boot_milestone") or (legacy.get("boot_milestone") if isinstance(legacy, dict) else None)
    return RuleSet(rules, str(boot or "sel4-booted"), (str(path),))


def platform_rules_file(platform: str) -> Path:
    path = data_file("rules", f"{platform}.toml")
    if not path.is_file():
        platform_file(platform)  # an unknown platform: says which ones exist
        raise InputError(f"platform {platform!r} has no console rules ({path.name} is not shipped)")
    return path


def rules_for(platform: str, extra: tuple[Path, ...] | list[Path] = ()) -> RuleSet:
    """The platform's shipped rules with the user's ``extra`` rule files checked first."""
    ruleset = load_rules(platform_rules_file(platform))
    for path in reversed(list(extra)):
        ruleset = ruleset.with_rules_first(load_rules(Path(path)))
    return ruleset


@dataclass(frozen=True)
class Match:
    """A rule that matched a console line, and when (seconds since the run started)."""

    rule: str
    kind: RuleKind
    line: str
    time: float
    line_number: int
    cause: str | None = None
    milestone: str | None = None


LOOKBACK = 4096
"""Characters at the end of an unfinished line that ``partial`` rules (prompts) are matched
against each time more of the line arrives: bounded, so a line that never ends costs time
linear in its length, not quadratic."""

MAX_LINE = 1 << 20
"""Characters of one line kept for the whole-line rules when it ends (its last ones: a line
longer than this -- megabytes without a newline -- is judged by its tail)."""


@dataclass
class ConsoleMatcher:
    """Feeds on raw console bytes and judges them line by line, as they arrive.

    ``feed`` returns the run's decisive match the first time one appears (and ``None``
    otherwise); ``judge_partial`` lets a caller treat a line that stopped mid-way (a prompt)
    as printed after a quiet spell, so non-partial rules see it too. Work per ``feed`` is
    linear in the bytes fed (plus :data:`LOOKBACK`), however long the current line gets.
    """

    ruleset: RuleSet
    milestones: dict[str, float] = field(default_factory=dict)
    notes: list[Match] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    decisive: Match | None = None
    line_number: int = 1
    last_milestone: str | None = None
    _decoder: codecs.BufferedIncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _chunks: list[str] = field(default_factory=list)  # the current line, in pieces
    _length: int = 0  # of the current line's kept pieces
    _tail: str = ""  # the current line's last LOOKBACK characters
    _fired: set[int] = field(default_factory=set)
    _ignored: bool = False

    def feed(self, data: bytes, now: float) -> Match | None:
        """Add console bytes received at ``now``; the decisive match if this decided the run."""
        text = self._decoder.decode(data)
        before = self.decisive
        partial_rules = any(rule.partial for rule in self.ruleset.rules)
        start = 0
        while start < len(text):
            end = text.find("\n", start)
            head = text[start:] if end < 0 else text[start:end]
            self._append(head)
            if end >= 0:
                self._judge(self._line(), now, complete=True)
                self._next_line()
                start = end + 1
            else:
                if head and partial_rules:
                    window = self._tail + head
                    self._judge(window[-(LOOKBACK + len(head)):], now, complete=False)
                start = len(text)
            self._tail = (self._tail + head)[-LOOKBACK:] if end < 0 else ""
        return self.decisive if self.decisive is not before else None

    def judge_partial(self, now: float) -> Match | None:
        """Judge the unfinished line with every rule (it has been quiet for a while)."""
        before = self.decisive
        if self._length:
            self._judge(self._line(), now, complete=True)
        return self.decisive if self.decisive is not before else None

    def finish(self, now: float) -> Match | None:
        """The console ended: judge what is left of the last line."""
        before = self.decisive
        self._append(self._decoder.decode(b"", final=True))
        if self._length:
            self._judge(self._line(), now, complete=True)
        return self.decisive if self.decisive is not before else None

    @property
    def has_partial_line(self) -> bool:
        """Whether an unfinished line is pending (cheap: no text is built)."""
        return self._length > 0

    @property
    def partial_line(self) -> str:
        """The end of the unfinished line (at most :data:`LOOKBACK` characters), cleaned."""
        return strip_ansi(self._tail)

    def _append(self, piece: str) -> None:
        if not piece:
            return
        self._chunks.append(piece)
        self._length += len(piece)
        if self._length > 2 * MAX_LINE:  # keep the last MAX_LINE characters
            kept = "".join(self._chunks)[-MAX_LINE:]
            self._chunks, self._length = [kept], len(kept)

    def _line(self) -> str:
        line = "".join(self._chunks)[-MAX_LINE:]
        self._chunks, self._length = ([line], len(line)) if line else ([], 0)
        return line

    def _next_line(self) -> None:
        self._chunks, self._length, self._tail = [], 0, ""
        self._fired = set()
        self._ignored = False
        self.line_number += 1

    def _judge(self, raw: str, now: float, *, complete: bool) -> None:
        if self._ignored:
            return
        text = strip_ansi(raw)
        for index, rule in enumerate(self.ruleset.rules):
            if index in self._fired or not (complete or rule.partial):
                continue
            if not rule.pattern.search(text):
                continue
            self._fired.add(index)
            if rule.kind == "ignore":
                self._ignored = True
                return
            self._record(Match(rule.name, rule.kind, _shown(text), now, self.line_number,
                               rule.cause, rule.milestone))

    def _record(self, match: Match) -> None:
        self.matches.append(match)
        if match.milestone and match.milestone not in self.milestones:
            self.milestones[match.milestone] = match.time
            self.last_milestone = match.milestone
        if match.kind == "note":
            self.notes.append(match)
        elif match.kind in DECISIVE_KINDS and self.decisive is None:
            self.decisive = match

    @property
    def booted(self) -> bool:
        """Whether seL4 itself came up (the boot/test timeout split)."""
        return self.ruleset.boot_milestone in self.milestones


SHOWN_LINE = 400


def _shown(text: str) -> str:
    """A matched line as reports show it: stripped, and its end when it is very long."""
    text = text.strip()
    return text if len(text) <= SHOWN_LINE else "…" + text[-SHOWN_LINE:]


def replay(ruleset: RuleSet, data: bytes, chunk: int = 1) -> ConsoleMatcher:
    """Feed a recorded console through a matcher ``chunk`` bytes at a time (time = byte offset)."""
    matcher = ConsoleMatcher(ruleset)
    for offset in range(0, len(data), chunk):
        matcher.feed(data[offset:offset + chunk], float(offset))
    matcher.finish(float(len(data)))
    return matcher


# -- guest memory ----------------------------------------------------------------------------

@dataclass
class GuestMemory:
    """The guest's own view of its memory: the ``Mem:`` row of ``free -m`` (MiB) and
    ``/proc/meminfo`` (kB). The one guest-memory record: the boot record and the report hold it."""

    total_mib: int | None = None
    used_mib: int | None = None
    free_mib: int | None = None
    shared_mib: int | None = None
    buff_cache_mib: int | None = None
    available_mib: int | None = None
    meminfo_kb: dict[str, int] = field(default_factory=dict)


def _console_lines(text: str) -> list[str]:
    return [strip_ansi(line).rstrip() for line in text.replace("\r", "\n").split("\n")]


def parse_free(text: str) -> GuestMemory | None:
    """The last ``free`` table's Mem row in ``text`` (console output, CRs and echo allowed)."""
    header: list[str] | None = None
    found: GuestMemory | None = None
    for line in _console_lines(text):
        words = line.split()
        if "total" in words and "used" in words and "free" in words and not line.startswith("Mem"):
            header = [w.replace("/", "_") for w in words]
        elif header and words and words[0] == "Mem:":
            values = words[1:]
            if len(values) != len(header) or not all(v.isdigit() for v in values):
                continue
            row = dict(zip(header, (int(v) for v in values), strict=True))
            if {"total", "used", "free"} <= row.keys():
                found = GuestMemory(
                    total_mib=row["total"], used_mib=row["used"], free_mib=row["free"],
                    shared_mib=row.get("shared"), buff_cache_mib=row.get("buff_cache", row.get("buffers")),
                    available_mib=row.get("available"),
                )
    return found


_MEMINFO = re.compile(r"^([A-Za-z][\w()]*):\s+(\d+)(?:\s+kB)?$")


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` lines in ``text`` as ``{"MemTotal": kB, ...}``."""
    figures: dict[str, int] = {}
    for line in _console_lines(text):
        found = _MEMINFO.match(line.strip())
        if found:
            figures[found.group(1)] = int(found.group(2))
    return figures


def parse_guest_memory(text: str) -> GuestMemory | None:
    """``free -m`` and ``/proc/meminfo`` in a login session's output, or None if neither is there."""
    memory = parse_free(text)
    meminfo = parse_meminfo(text)
    if memory is None and not meminfo:
        return None
    memory = memory or GuestMemory()
    memory.meminfo_kb = meminfo
    return memory
