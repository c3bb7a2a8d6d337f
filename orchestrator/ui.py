"""Terminal output: rich progress and tables for people, plain lines off a TTY, JSON for machines.

A :class:`UI` is created once by the CLI and passed down; library code that has no UI gets
:func:`UI.silent`, so the core never prints on its own and never touches global state.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import os
import sys
import threading
import time
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.segment import Segment

from orchestrator.errors import OrchError
from orchestrator.sanitize import terminal_text

if TYPE_CHECKING:  # imported when used: a quiet or plain-text run never loads them
    from rich.progress import Progress
    from rich.table import Table


class SafeConsole(Console):
    """A rich Console that passes every string it renders through the sanitizer (outside text
    reaches tables and messages as strings: patch subjects, git errors, manifest paths), so
    only printable text reaches the terminal; rich adds its own colours afterwards.

    Outside text that reaches a table cell or a message unescaped is read as rich markup: so
    this console never emits a hyperlink (``[link=...]`` would be an OSC 8 sequence; orch makes
    none of its own), and text that is not valid markup (``[/x]``) is shown as it is instead
    of raising MarkupError."""

    def render_str(self, text: str, *args: Any, **kwargs: Any) -> Any:
        clean = terminal_text(text)
        try:
            return super().render_str(clean, *args, **kwargs)
        except MarkupError:
            return super().render_str(clean, *args, **{**kwargs, "markup": False})

    def render(self, renderable: Any, options: Any = None) -> Iterator[Segment]:
        for segment in super().render(renderable, options):
            style = segment.style
            if style is not None and style.link:
                yield Segment(segment.text, style.clear_meta_and_links(), segment.control)
            else:
                yield segment


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, paths, enums and containers into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    return obj


T = TypeVar("T")


def _from_json(hint: Any, value: Any) -> Any:
    """Build ``hint`` (a dataclass, ``X | None``, ``list[X]`` or a plain type) from JSON data."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(args[0], value) if len(args) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_from_json(item, v) for v in value]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_jsonable(hint, value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def from_jsonable(cls: type[T], data: Any) -> T:
    """A dataclass from its :func:`to_jsonable` form; unknown keys are ignored (newer files).
    Raises ValueError / TypeError on data of the wrong shape."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _from_json(hints[f.name], data[f.name])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    return cls(**kwargs)


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=False)


class Tracker(Protocol):
    """What long-running library code reports progress through."""

    def add(self, name: str, total: float | None = None) -> int: ...

    def advance(self, task: int, amount: float = 1.0, status: str | None = None) -> None: ...

    def done(self, task: int, status: str) -> None: ...


class _NullTracker:
    def add(self, name: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int, amount: float = 1.0, status: str | None = None) -> None:
        pass

    def done(self, task: int, status: str) -> None:
        pass


HEARTBEAT_SECONDS = 30.0


@dataclass
class _PlainTracker:
    """One line per finished task, for logs and pipes; and every ``heartbeat`` seconds one line
    per task still running (elapsed time and its last status, e.g. ninja's [n/m]), so a CI log
    never sits silent for minutes."""

    console: Console
    names: dict[int, str] = field(default_factory=dict)
    heartbeat: float = HEARTBEAT_SECONDS
    started: dict[int, float] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, total: float | None = None) -> int:
        with self.lock:
            task = len(self.names) + 1
            self.names[task] = terminal_text(name)
            self.started[task] = time.monotonic()
        return task

    def advance(self, task: int, amount: float = 1.0, status: str | None = None) -> None:
        if status is not None:
            with self.lock:
                self.status[task] = status

    def done(self, task: int, status: str) -> None:
        with self.lock:
            self.started.pop(task, None)
        self.console.print(f"{self.names.get(task, '?')}: {status}", highlight=False, markup=False)

    def beat(self) -> None:
        """One line per running task."""
        now = time.monotonic()
        with self.lock:
            running = [(t, now - s) for t, s in self.started.items()]
        for task, elapsed in running:
            minutes, seconds = divmod(int(elapsed), 60)
            note = self.status.get(task)
            self.console.print(f"{self.names.get(task, '?')}: running {minutes}m{seconds:02d}s"
                               + (f" ({note})" if note else ""), highlight=False, markup=False)

    def run_heartbeat(self) -> None:
        while not self.stop.wait(self.heartbeat):
            self.beat()


@dataclass
class _RichTracker:
    progress: Progress

    def add(self, name: str, total: float | None = None) -> int:
        return int(self.progress.add_task(escape(terminal_text(name)), total=total, status=""))

    def advance(self, task: int, amount: float = 1.0, status: str | None = None) -> None:
        if status is None:
            self.progress.advance(task, amount)  # type: ignore[arg-type]
        else:
            self.progress.update(task, advance=amount,  # type: ignore[arg-type]
                                 status=escape(terminal_text(status)))

    def done(self, task: int, status: str) -> None:
        status = escape(terminal_text(status))
        for t in self.progress.tasks:
            if t.id == task:
                total = t.total or 1
                self.progress.update(t.id, total=total, completed=total, status=escape(status))


class _Console(SafeConsole):
    """rich's console, except that a closed stdout (``orch status | head``) raises
    BrokenPipeError for the CLI to end quietly with 0, where rich would exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


LOG_WIDTH = 160
"""Columns of tables written to a file or pipe (a CI log, ``| tee``) when $COLUMNS is unset:
rich's 80 squeezed the bisect and build tables into one word per line; logs scroll sideways."""


def log_width(stream: Any) -> int | None:
    """The width to render at: None (the terminal's, or $COLUMNS) on a TTY or with $COLUMNS
    set, else :data:`LOG_WIDTH`."""
    isatty = getattr(stream, "isatty", None)
    if os.environ.get("COLUMNS") or (callable(isatty) and isatty()):
        return None
    return LOG_WIDTH


@dataclass
class UI:
    """Where a command's human output goes. ``json`` mode keeps stdout for the JSON document."""

    out: Console
    err: Console
    quiet: bool = False
    json: bool = False
    verbose: bool = False

    @classmethod
    def create(cls, *, quiet: bool = False, json_mode: bool = False, verbose: bool = False,
               color: bool = True) -> UI:
        """Consoles for a command; ``color=False`` (``--no-color``, or NO_COLOR set) gives plain
        text for logs and pasting into reviews."""
        no_color = not color or None  # None: rich decides (it honours NO_COLOR and TTYs)
        out = _Console(file=sys.stdout, highlight=False, soft_wrap=True, no_color=no_color,
                       color_system="auto" if color else None, width=log_width(sys.stdout))
        err = SafeConsole(file=sys.stderr, highlight=False, soft_wrap=True, no_color=no_color,
                          color_system="auto" if color else None, width=log_width(sys.stderr))
        return cls(out=out, err=err, quiet=quiet, json=json_mode, verbose=verbose)

    @classmethod
    def silent(cls) -> UI:
        """A UI for library use: prints nothing."""
        null = Console(file=io.StringIO(), highlight=False, quiet=True)
        return cls(out=null, err=null, quiet=True)

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal and not self.quiet

    def info(self, message: str) -> None:
        """A progress note for people: stderr, so stdout stays clean for results and JSON."""
        if not self.quiet:
            self.err.print(escape(message), highlight=False)

    def warn(self, message: str) -> None:
        """A warning (plain text: brackets in it are shown, never taken as markup)."""
        self.err.print(f"[yellow]warning:[/] {escape(terminal_text(message))}", highlight=False)

    def error(self, error: OrchError) -> None:
        self.err.print(f"[bold red]error:[/] {escape(terminal_text(error.message))}", highlight=False,
                       markup=True)
        if error.hint:
            self.err.print(f"[dim]hint: {escape(terminal_text(error.hint))}[/]", highlight=False)

    def result(self, data: Any, table: Table | str | None = None) -> None:
        """Print a command's result: JSON on stdout in --json mode, else the table."""
        if self.json:
            sys.stdout.write(dumps(data) + "\n")
            sys.stdout.flush()
        elif table is not None:
            self.out.print(table)

    @contextmanager
    def tracker(self) -> Iterator[Tracker]:
        """Progress bars on a terminal, a line per finished task elsewhere, nothing with -q."""
        if self.quiet:
            yield _NullTracker()
        elif not self.err.is_terminal:
            plain = _PlainTracker(self.err)
            beater = threading.Thread(target=plain.run_heartbeat, name="orch-heartbeat", daemon=True)
            beater.start()
            try:
                yield plain
            finally:
                plain.stop.set()
                beater.join(timeout=1.0)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.err,
                transient=False,
            )
            with progress:
                yield _RichTracker(progress)


NULL_TRACKER: Tracker = _NullTracker()
