"""Booting an image in QEMU and judging it: the command line, the console reader loop, the
scripted login session, the run record.

``run_image(RunSpec, ui) -> RunRecord`` is the library call (``orch run`` and ``orch build``
use it). QEMU is started through a :class:`~orchestrator.runtime.base.Runtime` (on the host,
or in a container of the build's image), as its own process group (or container), which is
always killed at the verdict, on a timeout and on Ctrl-C; the raw console is kept byte for
byte beside the record.
"""

from __future__ import annotations

import codecs
import contextlib
import datetime as dt
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from orchestrator.boot.console import (
    ConsoleMatcher,
    GuestMemory,
    Match,
    RuleSet,
    parse_guest_memory,
    rules_for,
    strip_ansi,
)
from orchestrator.boot.platform import load_platform
from orchestrator.digest import sha256_file_or_none
from orchestrator.errors import InfraError, InputError, exit_code_for_verdict
from orchestrator.runtime.base import Bind, CommandNotFound, Process, Runtime, distinct_dirs
from orchestrator.runtime.host import HostRuntime
from orchestrator.sanitize import StreamSanitizer
from orchestrator.ui import UI, to_jsonable

Verdict = Literal["pass", "fail", "timeout", "error"]
RECORD_NAME = "run.json"
CONSOLE_NAME = "console.log"
HIGHMEM_REFUSAL = "Addressing limited to 32 bits, but memory exceeds it"
ROMFILE_MISSING = "failed to find romfile"
QUIET_PARTIAL_LINE = 0.2  # seconds a half-printed line may sit before every rule judges it


# -- what to run ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoginScript:
    """The session after a pass: log in, wait for the prompt, run commands (each step with its
    own timeout) and parse their output for guest memory."""

    user: str = "root"
    prompt: str = r"[#$] $"
    commands: tuple[str, ...] = ("free -m", "cat /proc/meminfo")
    step_timeout: float = 30.0


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs. ``simulate`` (the build's generated script) replaces the
    platform's QEMU command; ``qemu``, ``memory`` and ``extra_args`` override either."""

    image: Path
    platform: str = "qemu-arm-virt"
    memory: str | None = None
    qemu: str | None = None
    extra_args: tuple[str, ...] = ()
    simulate: Path | None = None
    rules: tuple[Path, ...] = ()
    timeout: float = 300.0
    boot_timeout: float = 120.0
    login: LoginScript | None = field(default_factory=LoginScript)
    output_dir: Path | None = None
    runtime: Runtime | None = None  # where QEMU runs (default: this machine)
    # Called with (milestone, seconds since QEMU started) as each milestone is reached, so a
    # caller running several boots (orch build) can show progress without the console.
    on_milestone: Callable[[str, float], None] | None = None
    # Set (e.g. by a SIGINT handler) to stop the boot as Ctrl-C does, even when the
    # KeyboardInterrupt itself was swallowed (Python drops it when it lands in a finaliser).
    cancel: threading.Event | None = None
    # After a fail verdict the console is read this much longer (seconds) before QEMU is
    # stopped: the lines a maintainer wants in a bug report (the reservation address, the
    # init_ram assertion) come just after the decisive one. The verdict time is unchanged.
    fail_grace: float = 2.0
    # ... but the grace ends as soon as the console has been silent this long (seconds): a
    # failed guest prints its last lines at once and then hangs, and `git bisect run` waits
    # for orch's exit, which comes after the grace.
    fail_grace_quiet: float = 0.5


# -- the QEMU command ---------------------------------------------------------------------------

_SIMULATE_DEFAULT = re.compile(r"""dest=["'](\w+)["'][^)]*?default=(["'])(.*?)\2""", re.S)
_QEMU_COMMAND_LINE = re.compile(r"QEMU command:\s*(.+)")


def qemu_argv_from_simulate(script: Path) -> list[str]:
    """The QEMU argv the build's ``simulate`` script would run.

    Reads the defaults seL4's generated ``simulate`` (Python) bakes in and joins them the way
    the script does; a text holding a ``QEMU command: ...`` line (e.g. its ``--dry-run``
    output) works too. Nothing is executed.
    """
    try:
        text = script.read_text(errors="replace")
    except OSError as err:
        raise InputError(f"{script}: cannot read simulate script: {err.strerror}") from None
    found = _QEMU_COMMAND_LINE.search(text)
    if found and "dest=" not in text:
        return shlex.split(found.group(1))
    d = {m.group(1): m.group(3) for m in _SIMULATE_DEFAULT.finditer(text)}
    if "qemu_sim_binary" not in d:
        raise InputError(f"{script}: no QEMU command found (not a seL4 simulate script?)")
    kernel, initrd = d.get("qemu_sim_kernel_file", ""), d.get("qemu_sim_initrd_file", "")
    images = f"-kernel {initrd}" if not kernel else f"-kernel {kernel} -initrd {initrd}"
    cpu = d.get("qemu_sim_cpu", "")
    parts = [
        d["qemu_sim_binary"],
        f"-machine {d['qemu_sim_machine']}" if d.get("qemu_sim_machine") else "",
        f"-cpu {cpu}{d.get('qemu_sim_cpu_opt', '')}" if cpu else "",
        d.get("qemu_sim_graphic_opt", ""), d.get("qemu_sim_serial_opt", ""),
        f"-m size={d['qemu_sim_mem_size']}" if d.get("qemu_sim_mem_size") else "",
        d.get("qemu_sim_args", ""), d.get("qemu_sim_extra_args", ""), images,
    ]
    return shlex.split(" ".join(parts))


def _with_memory(argv: list[str], memory: str) -> list[str]:
    """``argv`` with its ``-m`` option set to ``memory`` (added if missing)."""
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg in ("-m", "--m"):
            out[index + 1] = memory if not out[index + 1].startswith("size=") else f"size={memory}"
            return out
    return [*out[:1], "-m", memory, *out[1:]]


def argv_memory(argv: Sequence[str]) -> str | None:
    for index, arg in enumerate(argv[:-1]):
        if arg in ("-m", "--m"):
            return argv[index + 1].removeprefix("size=")
    return None


def without_highmem_off(argv: Sequence[str]) -> list[str] | None:
    """``argv`` with ``highmem=off`` dropped from ``-machine`` (None if it has none)."""
    out = list(argv)
    for index, arg in enumerate(out[:-1]):
        if arg in ("-machine", "-M") and "highmem=off" in out[index + 1].split(","):
            out[index + 1] = ",".join(o for o in out[index + 1].split(",") if o != "highmem=off")
            return out
    return None


def qemu_command(spec: RunSpec) -> tuple[list[str], Path]:
    """The argv to run and the directory to run it in."""
    if spec.simulate is not None:
        argv = qemu_argv_from_simulate(spec.simulate)
        cwd = spec.simulate.resolve().parent
        if spec.memory:
            argv = _with_memory(argv, spec.memory)
    else:
        platform = load_platform(spec.platform)
        image = spec.image.resolve()
        argv = [platform.qemu, *platform.args, "-m", spec.memory or platform.memory, "-kernel", str(image)]
        cwd = image.parent
    if spec.qemu:
        argv[0] = spec.qemu
    return [*argv, *spec.extra_args], cwd


def image_from_simulate(script: Path) -> Path:
    """The image file a simulate script boots (the file after ``-kernel``)."""
    argv = qemu_argv_from_simulate(script)
    for index, arg in enumerate(argv[:-1]):
        if arg == "-kernel":
            return (script.resolve().parent / argv[index + 1]).resolve()
    raise InputError(f"{script}: its QEMU command has no -kernel image")


# -- the record -----------------------------------------------------------------------------------

@dataclass
class SessionStep:
    send: str
    status: Literal["ok", "timeout", "ended"]
    seconds: float
    output: str = ""


@dataclass
class Session:
    status: Literal["ok", "timeout", "ended"] = "ok"
    steps: list[SessionStep] = field(default_factory=list)


@dataclass
class RunRecord:
    """One run's outcome: what was run, what the console said and when, and guest memory.
    Times are seconds since QEMU was started."""

    image: str
    image_sha256: str | None
    platform: str
    verdict: Verdict
    cause: str | None = None
    matched_rule: str | None = None
    matched_line: str | None = None
    matched_at: float | None = None
    verdict_at: float | None = None
    stopped_at: float | None = None
    milestones: dict[str, float] = field(default_factory=dict)
    last_milestone: str | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)
    guest_memory: GuestMemory | None = None
    session: Session | None = None
    qemu_command: list[str] = field(default_factory=list)
    memory: str | None = None
    launcher: str = "host"
    retries: list[dict[str, Any]] = field(default_factory=list)
    qemu_exit_status: int | None = None
    killed: bool = False  # QEMU was still running when orch stopped it
    qemu_stderr: str = ""
    error: str | None = None
    hint: str | None = None
    rules: list[str] = field(default_factory=list)
    started_at: str = ""
    duration: float = 0.0
    console_log: str | None = None
    record: str | None = None
    after_verdict: list[str] = field(default_factory=list)
    """Console lines printed in the grace period after a fail verdict (ANSI stripped)."""

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail or timeout (as seL4's CI counts it), 125 could not test."""
        return exit_code_for_verdict(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(self)
        data["exit_code"] = self.exit_code
        return data


# -- the console reader ---------------------------------------------------------------------------

class _Observer:
    """What the person watching sees: the raw console with -v, else a live summary line
    (or a plain line per milestone off a terminal)."""

    def __init__(self, ui: UI, label: str,
                 on_milestone: Callable[[str, float], None] | None = None) -> None:
        self.ui = ui
        self.label = label
        self.on_milestone = on_milestone
        self._announced: set[str] = set()
        self._status: Any = None
        self._last_update = 0.0
        self._reported: set[str] = set()
        self._sanitizer = StreamSanitizer(sgr=True)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __enter__(self) -> _Observer:
        if self.ui.interactive and not self.ui.verbose:
            self._status = self.ui.err.status(f"{self.label}: starting QEMU")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def console(self, data: bytes) -> None:
        """-v: the guest's console as it comes, through the sanitizer (colours kept; titles,
        clipboard writes, cursor moves dropped). console.log keeps the raw bytes."""
        if self.ui.verbose and not self.ui.quiet:
            self.ui.err.file.write(self._sanitizer.feed(self._decoder.decode(data)))
            self.ui.err.file.flush()

    def progress(self, elapsed: float, matcher: ConsoleMatcher, force: bool = False) -> None:
        if self.on_milestone is not None:
            for name, at in matcher.milestones.items():
                if name not in self._announced:
                    self._announced.add(name)
                    self.on_milestone(name, at)
        if self._status is not None and (force or elapsed - self._last_update >= 0.2):
            self._last_update = elapsed
            last = matcher.last_milestone or "-"
            self._status.update(f"{self.label}: {elapsed:6.1f}s  last milestone: {last}")
        elif self._status is None and not self.ui.verbose:
            for name, at in matcher.milestones.items():
                if name not in self._reported:
                    self._reported.add(name)
                    self.ui.info(f"{self.label}: {at:6.1f}s {name}")


@dataclass
class _Console:
    """The running QEMU's streams: reads console bytes into the log, the matcher and the
    observer; collects stderr."""

    process: Process
    matcher: ConsoleMatcher
    observer: _Observer
    log: IO[bytes] | None
    t0: float
    raw: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    last_data_at: float = 0.0
    partial_judged: bool = True
    cancel: threading.Event | None = None

    @property
    def stdout_open(self) -> bool:
        return self.process.stdout_open

    def now(self) -> float:
        return time.monotonic() - self.t0

    def close(self) -> None:
        self.process.close()

    def send(self, text: str) -> bool:
        return self.process.write(text.encode())

    def pump(self, wait: float) -> Match | None:
        """Wait up to ``wait`` seconds for output; the decisive match if it came now."""
        if self.cancel is not None and self.cancel.is_set():
            raise KeyboardInterrupt
        decided: Match | None = None
        output = self.process.read(wait)
        self.stderr += output.stderr
        if output.stdout:
            decided = self._console_data(output.stdout)
        if not decided and not self.partial_judged and self.now() - self.last_data_at >= QUIET_PARTIAL_LINE:
            self.partial_judged = True
            decided = self.matcher.judge_partial(self.now())
        return decided

    def _console_data(self, data: bytes) -> Match | None:
        now = self.now()
        self.raw += data
        if self.log is not None:
            self.log.write(data)
            self.log.flush()
        self.observer.console(data)
        self.last_data_at = now
        decided = self.matcher.feed(data, now)
        self.partial_judged = not self.matcher.has_partial_line
        return decided

    def drain(self, limit: float = 0.5) -> None:
        """After the kill: take what QEMU printed before it died, up to ``limit`` seconds."""
        end = time.monotonic() + limit
        while self.process.streams_open and time.monotonic() < end:
            self.pump(end - time.monotonic())

    def exited(self) -> bool:
        return not self.stdout_open or self.process.poll() is not None


def _next_wait(console: _Console, deadline: float) -> float:
    wait = min(deadline - console.now(), 0.25)
    if not console.partial_judged:
        wait = min(wait, QUIET_PARTIAL_LINE - (console.now() - console.last_data_at))
    return max(wait, 0.0)


# -- the login session -----------------------------------------------------------------------------

def _await_prompt(console: _Console, prompt: re.Pattern[str], timeout: float) -> tuple[str, bool]:
    """Console text from now until ``prompt`` ends it; (text, whether the prompt came)."""
    start = len(console.raw)
    deadline = console.now() + timeout
    while console.now() < deadline and console.stdout_open:
        console.pump(min(deadline - console.now(), 0.25))
        text = _session_text(console.raw[start:])
        if prompt.search(text):
            return text, True
    return _session_text(console.raw[start:]), False


def _session_text(data: bytes | bytearray) -> str:
    from orchestrator.boot.console import strip_ansi

    return strip_ansi(bytes(data).decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n"))


def _command_output(text: str, command: str, prompt: re.Pattern[str]) -> str:
    """A command's output: without its echoed command line and the trailing prompt."""
    found = prompt.search(text)
    body = text[: found.start()] if found else text
    lines = body.split("\n")
    if lines and lines[0].strip().endswith(command):
        lines = lines[1:]
    return "\n".join(lines).strip("\n")


def run_login_session(console: _Console, script: LoginScript) -> tuple[Session, GuestMemory | None]:
    """Log in, run the script's commands, and parse the guest's memory figures."""
    prompt = re.compile(script.prompt + r"\Z")
    session = Session()
    outputs: list[str] = []
    for send in (script.user, *script.commands):
        started = console.now()
        if not console.send(send + "\n"):
            session.steps.append(SessionStep(send, "ended", 0.0))
            session.status = "ended"
            break
        text, prompted = _await_prompt(console, prompt, script.step_timeout)
        status: Literal["ok", "timeout", "ended"] = "ok" if prompted else (
            "ended" if not console.stdout_open else "timeout")
        output = _command_output(text, send, prompt) if send != script.user else ""
        session.steps.append(SessionStep(send, status, round(console.now() - started, 3), output))
        if status != "ok":
            session.status = status
            break
        outputs.append(output)
    return session, parse_guest_memory("\n".join(outputs))


# -- one attempt ---------------------------------------------------------------------------------------

@dataclass
class _Attempt:
    """What one QEMU start produced."""

    decisive: Match | None
    verdict_at: float | None
    timed_out: bool
    exit_status: int | None
    killed: bool
    stderr: str
    console_bytes: int
    stopped_at: float
    session: Session | None = None
    memory: GuestMemory | None = None
    after_verdict: list[str] = field(default_factory=list)


def _start_qemu(runtime: Runtime, argv: list[str], cwd: Path, image_dir: Path) -> Process:
    binds = [Bind(d) for d in distinct_dirs([cwd, image_dir])]
    try:
        return runtime.start(argv, cwd, binds)
    except CommandNotFound as err:
        raise InfraError(err.message,
                         hint="install QEMU (Debian: qemu-system-arm ipxe-qemu) or pass --qemu") from None


def _attempt(spec: RunSpec, ruleset: RuleSet, argv: list[str], cwd: Path, runtime: Runtime,
             log: IO[bytes] | None, observer: _Observer) -> tuple[_Attempt, ConsoleMatcher]:
    matcher = ConsoleMatcher(ruleset)
    t0 = time.monotonic()
    process = _start_qemu(runtime, argv, cwd, spec.image.resolve().parent)
    console = _Console(process, matcher, observer, log, t0, cancel=spec.cancel)
    decisive: Match | None = None
    verdict_at: float | None = None
    timed_out = False
    session: Session | None = None
    memory: GuestMemory | None = None
    after: list[str] = []
    try:
        while decisive is None and not console.exited():
            deadline = spec.timeout if matcher.booted else min(spec.timeout, spec.boot_timeout)
            if console.now() >= deadline:
                timed_out = True
                break
            decisive = console.pump(_next_wait(console, deadline))
            observer.progress(console.now(), matcher)
        if decisive is None and not timed_out:
            console.drain(0.5)
            decisive = matcher.decisive or matcher.finish(console.now())
        if decisive is not None:
            verdict_at = console.now()
            observer.progress(verdict_at, matcher, force=True)
            if decisive.kind == "pass" and spec.login is not None and console.stdout_open:
                session, memory = run_login_session(console, spec.login)
            elif decisive.kind != "pass":
                after = _read_grace(console, spec.fail_grace, spec.fail_grace_quiet, decisive.line)
    finally:
        if not console.stdout_open:  # QEMU closed its console: let it finish exiting by itself
            process.wait(1.0)
        killed = process.poll() is None
        process.kill()
        console.drain()
        stopped_at = console.now()
        console.close()
    attempt = _Attempt(
        decisive=decisive, verdict_at=verdict_at, timed_out=timed_out,
        exit_status=process.returncode, killed=killed,
        stderr=console.stderr.decode(errors="replace"),
        console_bytes=len(console.raw), stopped_at=stopped_at, session=session, memory=memory,
        after_verdict=after,
    )
    return attempt, matcher


GRACE_LINES = 40  # at most this many lines after the verdict go into the record
GRACE_LOOK_BACK = 2 << 20  # bytes before the verdict searched for the decisive line


def _read_grace(console: _Console, seconds: float, quiet: float, decisive_line: str) -> list[str]:
    """Keep reading the console after a fail verdict, for at most ``seconds`` and until it has
    been silent for ``quiet`` seconds (0: the whole ``seconds``); the raw bytes go to console.log
    as ever. Returns the lines after the decisive one, ANSI stripped, for the record. Only the
    console's tail is decoded: the work is bounded whatever the guest printed before."""
    at_verdict = len(console.raw)
    end = console.now() + max(seconds, 0.0)
    while console.now() < end and not console.exited():
        silent = console.now() - console.last_data_at
        if quiet > 0 and silent >= quiet:
            break
        console.pump(min(0.25, end - console.now(), quiet - silent if quiet > 0 else 0.25))
    return lines_after(bytes(console.raw[max(0, at_verdict - GRACE_LOOK_BACK):]), decisive_line)


def lines_after(data: bytes, decisive_line: str) -> list[str]:
    """The non-empty lines of ``data`` after the first one that is ``decisive_line`` (ANSI
    stripped), at most :data:`GRACE_LINES`."""
    text = strip_ansi(data.decode(errors="replace").replace("\r", ""))
    lines = [line.rstrip() for line in text.split("\n")]
    at = next((i for i, line in enumerate(lines) if line.strip() == decisive_line.strip()), None)
    if at is None:
        return []
    return [line for line in lines[at + 1:] if line.strip()][:GRACE_LINES]


# -- judging an attempt --------------------------------------------------------------------------

def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _judge_exit(attempt: _Attempt, record: RunRecord) -> None:
    """QEMU ended before any decisive line: a refusal or crash is an infrastructure error;
    a machine that powered itself off without passing is a failure. (Both runtimes report a
    process killed by a signal as a negative status.)"""
    status = attempt.exit_status
    reason = _first_line(attempt.stderr)
    if status is not None and status < 0:
        record.verdict, record.cause = "error", "qemu-crashed"
        record.error = f"QEMU died (exit status {status}) before a verdict" + (f": {reason}" * bool(reason))
    elif status == 0:
        record.verdict, record.cause = "fail", "guest-exit"
        record.error = "the machine stopped (QEMU exited with status 0) before a pass"
    elif attempt.console_bytes == 0 or reason:
        record.verdict = "error"
        record.cause = "qemu-missing" if status == 127 else "qemu-refused"
        record.error = f"QEMU refused to start: {reason or f'exit status {status}'}"
        if ROMFILE_MISSING in attempt.stderr:
            record.hint = "install the ipxe-qemu package (QEMU's network boot ROMs) where QEMU runs"
    else:
        record.verdict, record.cause = "fail", "guest-exit"
        record.error = f"QEMU exited with status {status} before a verdict"


EMPTY_CONSOLE_HINT = (
    "the console stayed empty, not even the ELF-loader spoke: -m is probably not the image's "
    "QEMU_MEMORY (it then loads outside guest RAM); pass --memory SIZE, or give the build "
    "directory so the memory comes from its simulate script"
)


def _judge(attempt: _Attempt, matcher: ConsoleMatcher, record: RunRecord) -> None:
    record.milestones = {k: round(v, 3) for k, v in matcher.milestones.items()}
    record.last_milestone = matcher.last_milestone
    record.notes = [{"rule": n.rule, "line": n.line, "at": round(n.time, 3)} for n in matcher.notes]
    record.qemu_exit_status, record.killed = attempt.exit_status, attempt.killed
    record.qemu_stderr = attempt.stderr[-4000:]
    record.stopped_at = round(attempt.stopped_at, 3)
    if attempt.decisive is not None:
        d = attempt.decisive
        record.verdict = "pass" if d.kind == "pass" else "fail"
        record.cause, record.matched_rule, record.matched_line = d.cause, d.rule, d.line
        record.matched_at = round(d.time, 3)
        record.verdict_at = round(attempt.verdict_at or d.time, 3)
        record.session, record.guest_memory = attempt.session, attempt.memory
        record.after_verdict = attempt.after_verdict
    elif attempt.timed_out:
        record.verdict = "timeout"
        record.cause = "test-timeout" if matcher.booted else "boot-timeout"
        record.verdict_at = round(attempt.stopped_at, 3)
        if attempt.console_bytes == 0:
            record.hint = EMPTY_CONSOLE_HINT
    else:
        _judge_exit(attempt, record)


# -- the library call ---------------------------------------------------------------------------

def _refused_for_highmem(attempt: _Attempt) -> bool:
    return attempt.decisive is None and HIGHMEM_REFUSAL in attempt.stderr


@contextlib.contextmanager
def _console_log(output_dir: Path | None) -> Iterator[IO[bytes] | None]:
    if output_dir is None:
        yield None
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / CONSOLE_NAME).open("wb") as handle:
        yield handle


def write_record(record: RunRecord, output_dir: Path) -> Path:
    import json

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RECORD_NAME
    record.record = str(path)
    path.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return path


def run_image(spec: RunSpec, ui: UI) -> RunRecord:
    """Boot ``spec.image`` in QEMU, judge its console, run the login script after a pass, and
    return (and, with ``output_dir``, write) the record. Infrastructure trouble is a record
    with verdict ``error``; bad input (no image, broken rule file) raises InputError."""
    if not spec.image.is_file():
        raise InputError(f"{spec.image}: image not found")
    runtime: Runtime = spec.runtime or HostRuntime()
    ruleset = rules_for(spec.platform, spec.rules)
    argv, cwd = qemu_command(spec)
    record = RunRecord(
        image=str(spec.image), image_sha256=sha256_file_or_none(spec.image), platform=spec.platform,
        verdict="error", launcher=runtime.describe(), rules=list(ruleset.sources),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    started = time.monotonic()
    try:
        with (_console_log(spec.output_dir) as log,
              _Observer(ui, spec.image.name, spec.on_milestone) as observer):
            while True:
                record.qemu_command, record.memory = argv, argv_memory(argv)
                if log is not None:
                    log.seek(0)
                    log.truncate()
                attempt, matcher = _attempt(spec, ruleset, argv, cwd, runtime, log, observer)
                retry = without_highmem_off(argv) if _refused_for_highmem(attempt) else None
                if retry is None:
                    break
                record.retries.append({
                    "reason": _first_line(attempt.stderr), "qemu_command": argv,
                    "retried_with": "highmem left on (-machine without highmem=off), same -m",
                })
                argv = retry
            _judge(attempt, matcher, record)
    except InfraError as err:
        record.verdict, record.cause = "error", "qemu-missing"
        record.error, record.hint = err.message, err.hint
    except KeyboardInterrupt:
        record.verdict, record.cause, record.error = "error", "interrupted", "interrupted (Ctrl-C)"
        _finish(record, spec, started)
        raise
    _finish(record, spec, started)
    return record


def _finish(record: RunRecord, spec: RunSpec, started: float) -> None:
    record.duration = round(time.monotonic() - started, 3)
    if spec.output_dir is not None:
        record.console_log = str(spec.output_dir / CONSOLE_NAME)
        write_record(record, spec.output_dir)


