"""What ``.orch/`` holds (variant trees, builds, boots, results, analysis), how much disk each
takes, and which of them a gc may remove.

Rules: a results directory goes when it is older than the age limit (never the one ``latest``
points at); a build or boot directory goes when no kept results directory refers to it and
it is older than the limit; variant trees
(re-created from the workspace by the next build, with their users' work backed up first)
and analysis records go when older than the limit. With a size limit, the oldest removable
items go until ``.orch/`` fits."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import layout

KINDS = ("variant-trees", "builds", "boots", "results", "analysis")


@dataclass
class Item:
    """One removable directory or file under ``.orch/``."""

    kind: str
    path: Path
    size: int
    mtime: float
    keep: str | None = None  # why it must stay, if it must

    @property
    def age_days(self) -> float:
        return max(0.0, (time.time() - self.mtime) / 86400)


@dataclass
class GcPlan:
    items: list[Item]
    remove: list[Item] = field(default_factory=list)

    def total(self, kind: str | None = None) -> int:
        return sum(i.size for i in self.items if kind is None or i.kind == kind)

    @property
    def freed(self) -> int:
        return sum(i.size for i in self.remove)


def disk_size(path: Path) -> int:
    """Bytes on disk under ``path`` (symlinks not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_blocks * 512
    total = st.st_blocks * 512
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _children(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(p for p in directory.iterdir() if not p.is_symlink()
                          and not p.name.startswith(".") and not p.name.endswith(".lock"))


def _item(kind: str, path: Path) -> Item:
    return Item(kind, path, disk_size(path), path.lstat().st_mtime)


def inventory(root: Path) -> list[Item]:
    """Everything gc knows of under ``root/.orch``."""
    variants = layout.orch_dir(root) / layout.VARIANTS
    items = [_item("variant-trees", p) for p in _children(variants) if p.is_dir()]
    for variant in _children(layout.orch_dir(root) / layout.BUILDS):
        items += [_item("builds", p) for p in _children(variant) if p.is_dir()]
    items += [_item("boots", p) for p in _children(layout.boots_dir(root)) if p.is_dir()]
    items += [_item("results", p) for p in _children(layout.results_dir(root)) if p.is_dir()]
    items += [_item("analysis", p) for p in _children(layout.analysis_dir(root))]
    return items


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def referenced_by(result_dir: Path) -> set[Path]:
    """The build and boot directories a results directory names (in its results.json)."""
    try:
        data = json.loads((result_dir / "results.json").read_text())
    except (OSError, ValueError):
        return set()
    out: set[Path] = set()
    for text in _strings(data):
        if "/" + layout.ORCH_DIR + "/" not in text:
            continue
        path = Path(text)
        for candidate in (path, *path.parents):
            out.add(candidate)
    return out


def plan(root: Path, *, older_than_days: float | None = None, max_bytes: int | None = None,
         everything: bool = False) -> GcPlan:
    """What a gc with these limits removes. ``everything`` (``orch clean``): every item no kept
    results directory needs, whatever its age (the newest results directory is kept). The size
    rule takes unreferenced items first, oldest first, and only then old results directories
    (which frees what they alone referred to)."""
    items = inventory(root)
    latest = layout.results_dir(root) / layout.LATEST
    latest_target = latest.resolve() if latest.is_symlink() else None

    def old(item: Item) -> bool:
        return everything or (older_than_days is not None and item.age_days > older_than_days)

    results = sorted((i for i in items if i.kind == "results"), key=lambda i: i.mtime)
    for item in results:
        if latest_target is not None and item.path.resolve() == latest_target:
            item.keep = "the latest results"
    dropped = {i.path for i in results if i.keep is None and old(i)}
    while True:
        remove = _removals(items, dropped, old, max_bytes)
        left = sum(i.size for i in items if i.path not in remove)
        more = [i for i in results if i.keep is None and i.path not in dropped]
        if max_bytes is None or left <= max_bytes or not more:
            return GcPlan(items, [i for i in items if i.path in remove])
        dropped.add(more[0].path)


def _removals(items: list[Item], dropped: set[Path], old: Callable[[Item], bool],
              max_bytes: int | None) -> set[Path]:
    """With the results directories ``dropped``: what goes (and each kept item's reason)."""
    protected: set[Path] = set()
    for item in items:
        if item.kind == "results" and item.path not in dropped:
            protected |= referenced_by(item.path)
    protected = {p.resolve() for p in protected if p.exists()}
    for item in items:
        if item.kind != "results":
            referenced = item.kind in ("builds", "boots") and item.path.resolve() in protected
            item.keep = "a kept results directory refers to it" if referenced else None
    remove = {i.path for i in items
              if i.keep is None and (i.path in dropped or (i.kind != "results" and old(i)))}
    if max_bytes is not None:
        remove |= _over_size(items, max_bytes, remove, kinds=tuple(k for k in KINDS if k != "results"))
    return remove


def _over_size(items: list[Item], max_bytes: int, already: set[Path], kinds: tuple[str, ...]) -> set[Path]:
    """The oldest removable items of ``kinds`` to drop so the total fits ``max_bytes``."""
    total = sum(i.size for i in items if i.path not in already)
    out: set[Path] = set()
    for item in sorted(items, key=lambda i: i.mtime):
        if total <= max_bytes:
            break
        if item.kind in kinds and item.keep is None and item.path not in already:
            out.add(item.path)
            total -= item.size
    return out


def apply(gc: GcPlan, remove_tree: Callable[[str], None]) -> list[Item]:
    """Remove the plan's items (variant trees through ``remove_tree(name)``, which backs up
    work in them); the ones removed."""
    done: list[Item] = []
    for item in gc.remove:
        if item.kind == "variant-trees":
            remove_tree(item.path.name)
            if not (item.path / "src").exists():  # else work that could not be backed up is left
                shutil.rmtree(item.path, ignore_errors=True)
        elif item.path.is_dir():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)
        if not item.path.exists():
            done.append(item)
    return done


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def parse_size(text: str) -> int:
    """``500M``, ``5G``, ``2GiB``, ``1024`` (bytes)."""
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    number, unit = (t[:-1], t[-1]) if t and t[-1] in "kmgt" else (t, "")
    return int(float(number) * units[unit])


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``2`` (days)."""
    t = text.strip().lower()
    scale = {"d": 1.0, "h": 1 / 24, "m": 1 / 1440, "s": 1 / 86400}
    if t and t[-1] in scale:
        return float(t[:-1]) * scale[t[-1]]
    return float(t)
