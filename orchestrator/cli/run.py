"""`orch run IMAGE`: boot one image in QEMU, judge its console, print and record the result."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator import layout
from orchestrator.boot.qemu import (
    LoginScript,
    RunRecord,
    RunSpec,
    image_from_simulate,
    run_image,
)
from orchestrator.cli.common import workspace_root
from orchestrator.errors import InputError, Terminated
from orchestrator.runtime import make_runtime
from orchestrator.ui import UI

DEFAULTS = RunSpec(image=Path())
LOGIN_DEFAULTS = LoginScript()


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "run", parents=[common], help="boot an image in QEMU and judge its console",
        description="Boot IMAGE in QEMU, give a verdict from the console rules as soon as a decisive "
        "line appears, log in after a pass and read the guest's memory (free -m, /proc/meminfo). "
        "Writes run.json and the raw console.log to --output.",
        epilog="exit codes: 0 pass, 1 fail or timeout, 2 bad input, 125 could not test "
        "(QEMU missing or refusing to start), 130 interrupted",
    )
    parser.add_argument("image", metavar="IMAGE", type=Path,
                        help="the image to boot, or a build directory holding its generated `simulate`")
    how = parser.add_argument_group("how to start QEMU")
    how.add_argument("--platform", default=DEFAULTS.platform,
                     help=f"platform: QEMU arguments and console rules (default: {DEFAULTS.platform})")
    how.add_argument("--simulate", metavar="SCRIPT", type=Path,
                     help="take the QEMU command from the build's generated simulate script")
    how.add_argument("--qemu", metavar="BIN", help="QEMU binary to run instead")
    how.add_argument("--memory", "-m", metavar="SIZE",
                     help="guest RAM as QEMU's -m takes it (must match what the image was configured with)")
    how.add_argument("--extra-args", metavar="ARGS", action="append", default=[],
                     help="more QEMU arguments, shell-quoted (repeatable; --extra-args='-d int')")
    how.add_argument("--docker-image", metavar="IMG",
                     help="run QEMU inside a container of IMG (the build's image) instead of on the host")
    judge = parser.add_argument_group("judging")
    judge.add_argument("--rules", metavar="FILE", type=Path, action="append", default=[],
                       help="extra console rule file (TOML), checked before the platform's (repeatable)")
    judge.add_argument("--timeout", metavar="S", type=float, default=DEFAULTS.timeout,
                       help=f"whole-run timeout in seconds (default: {DEFAULTS.timeout:g})")
    judge.add_argument("--fail-grace", metavar="S", type=float, default=DEFAULTS.fail_grace,
                       help="after a fail verdict, keep reading the console at most this long, for "
                       "the lines that follow it (default: "
                       f"{DEFAULTS.fail_grace:g}; the verdict time is unchanged; the JSON result and "
                       "the exit come after it)")
    judge.add_argument("--fail-grace-quiet", metavar="S", type=float, default=DEFAULTS.fail_grace_quiet,
                       help="end the grace early once the console has been silent this long "
                       f"(default: {DEFAULTS.fail_grace_quiet:g}; 0: read the whole grace)")
    judge.add_argument("--boot-timeout", metavar="S", type=float, default=DEFAULTS.boot_timeout,
                       help=f"seconds for seL4 itself to come up (default: {DEFAULTS.boot_timeout:g})")
    session = parser.add_argument_group("login session after a pass")
    session.add_argument("--no-login", action="store_true", help="stop at the verdict; do not log in")
    session.add_argument("--login-user", metavar="USER", default=LOGIN_DEFAULTS.user,
                         help=f"user to log in as (default: {LOGIN_DEFAULTS.user})")
    session.add_argument("--command", dest="commands", metavar="CMD", action="append", default=None,
                         help="command to run after login (repeatable; default: "
                         + ", ".join(repr(c) for c in LOGIN_DEFAULTS.commands) + ")")
    session.add_argument("--prompt", metavar="REGEX", default=LOGIN_DEFAULTS.prompt,
                         help=f"prompt regex at the end of output (default: {LOGIN_DEFAULTS.prompt!r})")
    session.add_argument("--step-timeout", metavar="S", type=float, default=LOGIN_DEFAULTS.step_timeout,
                         help=f"seconds per login/command step (default: {LOGIN_DEFAULTS.step_timeout:g})")
    parser.add_argument("--output", "-o", metavar="DIR", type=Path,
                        help="where run.json and console.log go (default: .orch/runs/STAMP-NAME in the "
                        "workspace, else ./orch-runs/STAMP-NAME)")
    parser.set_defaults(func=handle)


def _default_output(args: argparse.Namespace, image: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = workspace_root(args)
    base = layout.boots_dir(root) if layout.is_workspace(root) else Path.cwd() / "orch-runs"
    return base / f"{stamp}-{image.name}"


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    simulate: Path | None = args.simulate
    image: Path = args.image
    if image.is_dir():
        simulate = simulate or image / "simulate"
        if not simulate.is_file():
            raise InputError(f"{image}: a directory without a simulate script",
                             hint="pass the image file itself, or --simulate SCRIPT")
    if simulate is not None and (image.is_dir() or not image.exists()):
        image = image_from_simulate(simulate)
    extra = tuple(word for chunk in args.extra_args for word in shlex.split(chunk))
    login = None if args.no_login else LoginScript(
        user=args.login_user, prompt=args.prompt, step_timeout=args.step_timeout,
        commands=tuple(args.commands) if args.commands is not None else LOGIN_DEFAULTS.commands,
    )
    return RunSpec(
        image=image, platform=args.platform, memory=args.memory, qemu=args.qemu, extra_args=extra,
        simulate=simulate, rules=tuple(args.rules), timeout=args.timeout, boot_timeout=args.boot_timeout,
        fail_grace=max(0.0, args.fail_grace), fail_grace_quiet=max(0.0, args.fail_grace_quiet),
        login=login, output_dir=args.output or _default_output(args, image),
        runtime=make_runtime("docker", args.docker_image) if args.docker_image else None,
    )


def summary_table(record: RunRecord) -> Table:
    colour = {"pass": "green", "fail": "red", "timeout": "red", "error": "yellow"}[record.verdict]
    table = Table(show_header=False, box=None)
    verdict = f"[bold {colour}]{record.verdict.upper()}[/]" + (f" ({record.cause})" if record.cause else "")
    table.add_row("verdict", verdict)
    if record.matched_line:
        table.add_row("line", f"{escape(record.matched_line)}  [dim]at {record.matched_at:.2f}s[/]")
    if record.error:
        table.add_row("error", escape(record.error))
    if record.hint:
        table.add_row("hint", escape(record.hint))
    if record.milestones:
        table.add_row("milestones", ", ".join(f"{k} {v:.2f}s" for k, v in record.milestones.items()))
    for note in record.notes:
        table.add_row("note", f"{escape(note['line'])}  [dim]at {note['at']:.2f}s[/]")
    memory = record.guest_memory
    if memory is not None and memory.total_mib is not None:
        table.add_row("guest memory", f"{memory.total_mib} MiB total, {memory.used_mib} used, "
                      f"{memory.free_mib} free, {memory.available_mib} available")
    if record.session is not None and record.session.status != "ok":
        table.add_row("session", escape(f"{record.session.status} at {record.session.steps[-1].send!r}"))
    for retry in record.retries:
        table.add_row("retried", escape(f"{retry['retried_with']}: {retry['reason']}"))
    table.add_row("qemu", escape(" ".join(shlex.quote(a) for a in record.qemu_command)))
    if record.record:
        table.add_row("record", escape(record.record))
    return table


@dataclasses.dataclass
class _Stop:
    """Which signal stopped the boot, if one did."""

    terminated: bool = False


@contextlib.contextmanager
def _signals_also_set(cancel: threading.Event) -> Iterator[_Stop]:
    """Ctrl-C raises KeyboardInterrupt as usual (SIGTERM: Terminated) and also sets ``cancel``,
    which the boot checks as it reads the console: a KeyboardInterrupt that Python swallowed
    (it drops one raised inside a finaliser) still stops QEMU. The boot's own clean-up may
    raise a plain KeyboardInterrupt on the way out: the yielded record says which it was."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        raise KeyboardInterrupt

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.terminated = True
        cancel.set()
        raise Terminated

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def handle(args: argparse.Namespace, ui: UI) -> int:
    cancel = threading.Event()
    with _signals_also_set(cancel) as stop:
        try:
            record = run_image(dataclasses.replace(spec_from_args(args), cancel=cancel), ui)
        except KeyboardInterrupt:
            if stop.terminated:
                raise Terminated from None
            raise
    ui.result(record.to_dict(), summary_table(record))
    return record.exit_code
