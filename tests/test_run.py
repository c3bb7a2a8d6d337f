"""The QEMU runner against real QEMU, with the bare-metal console scripts of tests/baremetal/:
verdicts, causes, milestones, memory numbers, records, exit codes, and no QEMU left behind.
The scenarios that depend on where QEMU runs are run on the host runtime and, with --docker,
in a container of an image with Debian's QEMU (no container left behind either)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.boot.qemu import (
    LoginScript,
    RunRecord,
    RunSpec,
    qemu_argv_from_simulate,
    qemu_command,
    run_image,
    without_highmem_off,
)
from orchestrator.cli import main
from orchestrator.errors import InputError
from orchestrator.runtime.base import Runtime
from orchestrator.runtime.docker import BOOT_NAME_PREFIX, DockerRuntime
from orchestrator.runtime.host import HostRuntime
from orchestrator.ui import UI

pytestmark = pytest.mark.qemu


@pytest.fixture
def images(baremetal_images: dict[str, Path]) -> dict[str, Path]:
    return baremetal_images


@pytest.fixture
def runtime(runtime_name: str, request: pytest.FixtureRequest) -> Runtime:
    """Where QEMU runs: this machine, or a container of the QEMU test image."""
    if runtime_name == "host":
        return HostRuntime()
    return DockerRuntime(image=request.getfixturevalue("qemu_image"))


def boot_containers() -> list[str]:
    """Names of boot containers on the engine (none must be left after a run)."""
    from docker.client import DockerClient

    return [c.name for c in DockerClient.from_env().containers.list(all=True)
            if c.name.startswith(BOOT_NAME_PREFIX)]


def qemu_processes_for(image: Path) -> list[str]:
    """Command lines of live processes naming ``image`` (other people's QEMUs don't count)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            status = (entry / "status").read_text().splitlines()
            state = next((ln for ln in status if ln.startswith("State:")), "")
        except OSError:
            continue
        is_qemu = Path(argv[0]).name.startswith("qemu-system")
        if is_qemu and any(str(image) in arg for arg in argv) and "zombie" not in state:
            found.append(" ".join(argv))
    return found


def run(image: Path, tmp_path: Path, runtime: Runtime | None = None, **kwargs: object) -> RunRecord:
    before = boot_containers() if isinstance(runtime, DockerRuntime) else []
    spec = RunSpec(image=image, output_dir=tmp_path / "out", runtime=runtime, **kwargs)  # type: ignore[arg-type]
    record = run_image(spec, UI.silent())
    assert qemu_processes_for(image) == [], "QEMU left running"
    if isinstance(runtime, DockerRuntime):
        assert set(boot_containers()) <= set(before), "a boot container was left behind"
    return record


def test_failure_console_fails_with_allocator_cause_at_once(images: dict[str, Path], tmp_path: Path,
                                                           runtime: Runtime) -> None:
    record = run(images["fail"], tmp_path, runtime, timeout=120.0)
    assert (record.verdict, record.cause) == ("fail", "vmm-allocation")
    assert record.launcher == runtime.describe()
    assert record.matched_line == "ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page"
    assert record.exit_code == 1
    assert list(record.milestones) == ["elf-loader", "sel4-booted", "vmm-started"]
    assert [n["rule"] for n in record.notes] == ["untyped-retype-insufficient"]
    assert record.killed, "QEMU keeps running after the assertion; orch must stop it"
    assert record.matched_at is not None and record.verdict_at is not None
    assert record.matched_at <= record.verdict_at
    # The record and the raw console beside it.
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["verdict"] == "fail" and saved["exit_code"] == 1
    assert saved["image_sha256"] and len(saved["image_sha256"]) == 64
    assert saved["qemu_command"][:3] == ["qemu-system-aarch64", "-machine",
                                         "virt,virtualization=on,highmem=off,secure=off"]
    raw = (tmp_path / "out" / "console.log").read_bytes()
    assert b"\x1b[32mseL4(CPU 0)\x1b[0m" in raw and b"Failed to allocate page\r\n" in raw


def test_each_milestone_is_announced_once_as_it_is_reached(images: dict[str, Path], tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    record = run(images["login"], tmp_path, memory="512", login=None,
                 on_milestone=lambda name, at: seen.append((name, at)))
    assert [name for name, _ in seen] == list(record.milestones)
    assert all(at == pytest.approx(record.milestones[name], abs=0.01) for name, at in seen)


def test_login_console_passes_and_reads_guest_memory(images: dict[str, Path], tmp_path: Path,
                                                     runtime: Runtime) -> None:
    record = run(images["login"], tmp_path, runtime, memory="512")
    assert (record.verdict, record.cause, record.exit_code) == ("pass", None, 0)
    assert record.matched_line == "buildroot login:"
    assert list(record.milestones) == ["elf-loader", "sel4-booted", "vmm-started", "guest-linux", "login"]
    assert record.session is not None and record.session.status == "ok"
    assert [s.send for s in record.session.steps] == ["root", "free -m", "cat /proc/meminfo"]
    memory = record.guest_memory
    assert memory is not None
    figures = (memory.total_mib, memory.used_mib, memory.free_mib, memory.available_mib)
    assert figures == (1983, 26, 1954, 1925)
    assert memory.meminfo_kb["MemTotal"] == 2030616
    assert record.memory == "512" and record.retries == []


def test_two_variants_report_their_own_memory(images: dict[str, Path], tmp_path: Path) -> None:
    big = run(images["login"], tmp_path / "big", memory="1024")
    small = run(images["login-small"], tmp_path / "small", memory="1024")
    assert big.guest_memory is not None and small.guest_memory is not None
    assert (big.guest_memory.total_mib, small.guest_memory.total_mib) == (1983, 480)
    assert small.guest_memory.meminfo_kb["MemAvailable"] == 465920


def test_4096_with_highmem_off_is_retried_with_highmem_on(images: dict[str, Path], tmp_path: Path,
                                                          runtime: Runtime) -> None:
    record = run(images["login"], tmp_path, runtime, memory="4096", login=None)
    assert record.verdict == "pass" and record.memory == "4096"
    assert len(record.retries) == 1
    assert "Addressing limited to 32 bits" in record.retries[0]["reason"]
    assert "highmem=off" in " ".join(record.retries[0]["qemu_command"])
    assert "virt,virtualization=on,secure=off" in record.qemu_command


def test_custom_commands_and_step_timeout(images: dict[str, Path], tmp_path: Path) -> None:
    script = LoginScript(commands=("uname -a", "free -m"), step_timeout=10.0)
    record = run(images["login"], tmp_path, login=script)
    assert record.session is not None
    assert record.session.steps[1].output == "-sh: uname -a: not found"
    assert record.guest_memory is not None and record.guest_memory.total_mib == 1983
    wrong_prompt = LoginScript(prompt=r"\$ $", step_timeout=1.0)
    record = run(images["login"], tmp_path / "2", login=wrong_prompt)
    assert record.verdict == "pass"  # the boot passed; the session's trouble is recorded
    assert record.session is not None and record.session.status == "timeout"
    assert record.session.steps[-1].send == "root"


def test_silent_hang_is_a_boot_timeout(images: dict[str, Path], tmp_path: Path, runtime: Runtime) -> None:
    record = run(images["silent"], tmp_path, runtime, timeout=30.0, boot_timeout=1.5)
    assert (record.verdict, record.cause, record.exit_code) == ("timeout", "boot-timeout", 1)
    assert record.milestones == {} and record.killed
    assert record.hint is not None and "--memory" in record.hint  # an empty console: wrong -m?


def test_hang_after_sel4_boot_is_a_test_timeout(images: dict[str, Path], tmp_path: Path) -> None:
    record = run(images["sel4-hang"], tmp_path, timeout=2.0, boot_timeout=1.0)
    assert (record.verdict, record.cause) == ("timeout", "test-timeout")
    assert "sel4-booted" in record.milestones and record.killed


def test_machine_powering_off_is_a_failure(images: dict[str, Path], tmp_path: Path, runtime: Runtime) -> None:
    record = run(images["poweroff"], tmp_path, runtime, timeout=60.0)
    assert (record.verdict, record.cause) == ("fail", "guest-exit")
    assert record.qemu_exit_status == 0 and not record.killed


def test_missing_qemu_is_an_infrastructure_error(images: dict[str, Path], tmp_path: Path,
                                                  runtime: Runtime) -> None:
    record = run(images["login"], tmp_path, runtime, qemu="qemu-system-nonexistent")
    assert (record.verdict, record.cause, record.exit_code) == ("error", "qemu-missing", 125)
    assert "qemu-system-nonexistent" in (record.error or "")
    assert record.hint is not None and "install QEMU" in record.hint


@pytest.mark.docker
def test_an_image_without_qemu_is_an_infrastructure_error(images: dict[str, Path], tmp_path: Path,
                                                          base_image: str) -> None:
    record = run(images["fail"], tmp_path, DockerRuntime(image=base_image))
    assert (record.verdict, record.cause, record.exit_code) == ("error", "qemu-missing", 125)
    assert base_image in (record.error or "")


def test_qemu_refusing_to_start_is_an_infrastructure_error(images: dict[str, Path], tmp_path: Path,
                                                           runtime: Runtime) -> None:
    record = run(images["login"], tmp_path, runtime, extra_args=("-no-such-option",))
    assert (record.verdict, record.cause, record.exit_code) == ("error", "qemu-refused", 125)
    assert "-no-such-option: invalid option" in (record.error or "")


def test_missing_romfile_is_an_error_with_a_hint(images: dict[str, Path], tmp_path: Path) -> None:
    rom = tmp_path / "no-such-dir" / "efi-virtio.rom"
    extra = ("-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,romfile={rom}")
    record = run(images["login"], tmp_path, extra_args=extra)
    assert (record.verdict, record.exit_code) == ("error", 125)
    assert "failed to find romfile" in (record.error or "")
    assert record.hint is not None and "ipxe-qemu" in record.hint


def test_missing_image_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="image not found"):
        run_image(RunSpec(image=tmp_path / "nope.elf"), UI.silent())


# The build's generated `simulate` is a Python script whose argparse options carry the QEMU
# command as defaults (dest="qemu_sim_*", default="..."); the runner reads those pairs. This
# stand-in has the same pairs in a layout of our own (single and double quotes, one option
# spread over two lines), not upstream's text.
SIMULATE_DEFAULTS = {
    "binary": "qemu-system-aarch64",
    "machine": "virt,virtualization=on,highmem=off,secure=off",
    "cpu": "cortex-a53",
    "cpu_opt": "",
    "graphic_opt": "-nographic",
    "serial_opt": "",
    "mem_size": "2048",
    "args": "",
    "kernel_file": "",
    "initrd_file": "images/capdl-loader-image-arm-qemu-arm-virt",
    "extra_args": "",
}
SIMULATE = "#!/usr/bin/env python3\nimport argparse\nopts = argparse.ArgumentParser()\n" + "".join(
    f"opts.add_argument('--{name}', dest='qemu_sim_{name}',\n    type=str, default='{value}')\n"
    if index % 2 else f'opts.add_argument("--{name}", dest="qemu_sim_{name}", default="{value}")\n'
    for index, (name, value) in enumerate(SIMULATE_DEFAULTS.items())
)


def make_build_dir(tmp_path: Path, image: Path) -> Path:
    build = tmp_path / "build"
    (build / "images").mkdir(parents=True)
    (build / "images" / "capdl-loader-image-arm-qemu-arm-virt").write_bytes(image.read_bytes())
    (build / "simulate").write_text(SIMULATE)
    return build


def test_simulate_script_gives_the_command(images: dict[str, Path], tmp_path: Path) -> None:
    build = make_build_dir(tmp_path, images["fail"])
    assert qemu_argv_from_simulate(build / "simulate") == [
        "qemu-system-aarch64", "-machine", "virt,virtualization=on,highmem=off,secure=off",
        "-cpu", "cortex-a53", "-nographic", "-m", "size=2048",
        "-kernel", "images/capdl-loader-image-arm-qemu-arm-virt",
    ]
    seed_line = tmp_path / "dry-run.txt"
    seed_line.write_text("./simulate: QEMU command: qemu-system-aarch64 -machine "
                         "virt,virtualization=on,highmem=off,secure=off -cpu cortex-a53 -nographic  "
                         "-m size=4096  -kernel images/x\n")
    assert qemu_argv_from_simulate(seed_line)[-4:] == ["-m", "size=4096", "-kernel", "images/x"]
    image = build / "images" / "capdl-loader-image-arm-qemu-arm-virt"
    argv, cwd = qemu_command(RunSpec(image=image, simulate=build / "simulate", memory="1024", qemu="my-qemu"))
    assert (argv[0], argv[argv.index("-m") + 1], cwd) == ("my-qemu", "size=1024", build.resolve())
    without = without_highmem_off(argv)
    assert without is not None and "virt,virtualization=on,secure=off" in without


def test_cli_runs_a_build_directory(images: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    build = make_build_dir(tmp_path, images["fail"])
    code = main(["run", str(build), "--json", "-q", "-o", str(tmp_path / "out"), "--timeout", "60"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (document["verdict"], document["cause"], document["exit_code"]) == ("fail", "vmm-allocation", 1)
    assert document["qemu_command"][-1] == "images/capdl-loader-image-arm-qemu-arm-virt"
    assert document["record"] == str(tmp_path / "out" / "run.json")
    assert qemu_processes_for(build / "images") == []


def test_cli_exit_codes(images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(images["login"]), "-q", "-o", str(tmp_path / "a"), "--no-login"]) == 0
    assert main(["run", str(images["login"]), "-q", "-o", str(tmp_path / "b"), "--qemu", "nope-qemu"]) == 125
    assert main(["run", str(tmp_path / "missing.elf"), "-q"]) == 2
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "no-linux"\nkind = "fail"\nmatch = "Booting Linux"\ncause = "mine"\n')
    assert main(["run", str(images["login"]), "-q", "-o", str(tmp_path / "c"), "--rules", str(rules)]) == 1
    assert json.loads((tmp_path / "c" / "run.json").read_text())["cause"] == "mine"
    capsys.readouterr()


def test_ctrl_c_kills_qemu(images: dict[str, Path], tmp_path: Path, runtime: Runtime) -> None:
    """SIGINT to orch (what Ctrl-C sends to the foreground group) leaves no QEMU (and no
    container) behind."""
    image = images["silent"]
    in_docker = ["--docker-image", runtime.image] if isinstance(runtime, DockerRuntime) else []
    before = boot_containers() if in_docker else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(image), "-q", "-o", str(tmp_path / "out"),
         *in_docker],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not qemu_processes_for(image) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_processes_for(image), "QEMU never started"
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert qemu_processes_for(image) == []
    assert set(boot_containers() if in_docker else []) <= set(before)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (record["verdict"], record["cause"]) == ("error", "interrupted")
