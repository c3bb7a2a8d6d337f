"""Era-matched build images: a rule in the patchset's ``[build]`` table picks the toolchain
image for a point from another era of the sources.

```toml
[[build.images]]                     # the first rule that holds wins; else [build] image
image = "trustworthysystems/camkes:2023_01_01"
before = "2024-01-01"                # the point's snapshot date is earlier than this
[[build.images]]
image = "orch-toolchain:old-deps"
file = "tools/seL4/python-deps/setup.py"   # a file of the point's tree (project path + file)
contains = "version='0.3"            # or: matches = 'regex'
```

A rule may combine ``before``/``after`` (ISO dates, compared with the snapshot's committer
date) and ``file`` with ``contains``/``matches``; all its conditions must hold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from orchestrator.errors import InputError

ReadFile = Callable[[str], str | None]  # a file of the point's tree by workspace path, or None


@dataclass(frozen=True)
class ImageRule:
    image: str
    before: str | None = None
    after: str | None = None
    file: str | None = None
    contains: str | None = None
    matches: str | None = None

    def describe(self) -> str:
        parts = [f"before {self.before}" if self.before else "", f"after {self.after}" if self.after else "",
                 f"{self.file} contains {self.contains!r}" if self.contains else "",
                 f"{self.file} matches {self.matches!r}" if self.matches else ""]
        return " and ".join(p for p in parts if p) or "always"

    def holds(self, when: str | None, read: ReadFile) -> bool:
        if self.before or self.after:
            if when is None:
                return False
            day = _day(when)
            if self.before and not day < _day(self.before):
                return False
            if self.after and not day >= _day(self.after):
                return False
        if self.file is not None:
            text = read(self.file)
            if text is None:
                return False
            if self.contains is not None and self.contains not in text:
                return False
            if self.matches is not None and re.search(self.matches, text, re.M) is None:
                return False
        return True


def _day(text: str) -> date:
    return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)


_KEYS = {"image", "before", "after", "file", "contains", "matches"}


def parse_rules(value: object, where: str) -> tuple[ImageRule, ...]:
    """``[[build.images]]`` into rules; one InputError naming the rule at fault."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError(f"{where}: 'images' must be an array of tables ([[build.images]])")
    rules = []
    for number, table in enumerate(value, 1):
        at = f"{where}: images[{number}]"
        if not isinstance(table, Mapping):
            raise InputError(f"{at} must be a table")
        unknown = set(table) - _KEYS
        if unknown:
            raise InputError(f"{at}: unknown key '{sorted(unknown)[0]}'",
                             hint=f"known: {', '.join(sorted(_KEYS))}")
        if not all(isinstance(v, str) and v for v in table.values()):
            raise InputError(f"{at}: every value must be a non-empty string")
        rule = ImageRule(**{str(k): str(v) for k, v in table.items()})
        if not rule.image:
            raise InputError(f"{at}: 'image' is required")
        if (rule.contains or rule.matches) and not rule.file:
            raise InputError(f"{at}: 'contains'/'matches' need a 'file'")
        if rule.file and not (rule.contains or rule.matches):
            raise InputError(f"{at}: 'file' needs 'contains' or 'matches'")
        for key in ("before", "after"):
            text = getattr(rule, key)
            if text is not None:
                try:
                    _day(text)
                except ValueError:
                    raise InputError(f"{at}: {key} = {text!r} is not a date (YYYY-MM-DD)") from None
        if rule.matches:
            try:
                re.compile(rule.matches)
            except re.error as exc:
                raise InputError(f"{at}: matches: {exc}") from None
        rules.append(rule)
    return tuple(rules)


@dataclass(frozen=True)
class ImageChoice:
    image: str
    rule: str  # which rule chose it ("default" when none held)


def choose_image(rules: Sequence[ImageRule], default: str, when: str | None, read: ReadFile) -> ImageChoice:
    for number, rule in enumerate(rules, 1):
        if rule.holds(when, read):
            return ImageChoice(rule.image, f"images[{number}]: {rule.describe()}")
    return ImageChoice(default, "default")
