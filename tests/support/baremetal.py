"""Build the bare-metal AArch64 console scripts in tests/baremetal/ into ELF images.

``build_scenario("login", out_dir, MEM_TOTAL_MIB=1983)`` runs one plain cross-compiler line
(the same thing tests/baremetal/CMakeLists.txt builds) and returns the ELF's path. Tests that
use it call ``require_tools(*BAREMETAL_TOOLS)`` first.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).resolve().parent / "baremetal"
CROSS_GCC = "aarch64-linux-gnu-gcc"
BAREMETAL_TOOLS = ("qemu-system-aarch64", CROSS_GCC)
SCENARIOS = ("fail", "login", "silent", "sel4-hang", "poweroff")
# The memory figures of a second, smaller guest, so two variants' numbers can be told apart.
SMALL_GUEST = {"MEM_TOTAL_MIB": 480, "MEM_USED_MIB": 12, "MEM_FREE_MIB": 460, "MEM_AVAILABLE_MIB": 455,
               "MEMTOTAL_KB": 491520, "MEMFREE_KB": 471040, "MEMAVAILABLE_KB": 465920}
QEMU_DOCKERFILE = """FROM {base}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
        qemu-system-arm ipxe-qemu >/dev/null && rm -rf /var/lib/apt/lists/*
"""
CFLAGS = (
    "-ffreestanding", "-nostdlib", "-static", "-O2", "-mgeneral-regs-only", "-mstrict-align",
    "-fno-stack-protector", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none",
)


def scenario_define(scenario: str) -> str:
    """The ``-DSCENARIO=...`` switch for a scenario name such as ``sel4-hang``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown bare-metal scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    return "-DSCENARIO=SCENARIO_" + scenario.upper().replace("-", "_")


def compile_command(scenario: str, output: Path, **defines: int | str) -> list[str]:
    """The compiler argv building ``scenario`` into ``output``; ``defines`` become ``-DNAME=VALUE``."""
    return [
        CROSS_GCC, *CFLAGS, scenario_define(scenario),
        *(f"-D{name}={value}" for name, value in sorted(defines.items())),
        "-T", str(SOURCES / "link.ld"), str(SOURCES / "start.S"), str(SOURCES / "console.c"),
        "-o", str(output),
    ]


def build_scenario(scenario: str, out_dir: Path, name: str | None = None, **defines: int | str) -> Path:
    """Compile ``scenario`` (with optional memory figures etc. as defines) to ``out_dir/NAME.elf``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{name or scenario}.elf"
    result = subprocess.run(compile_command(scenario, output, **defines), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building bare-metal scenario {scenario} failed:\n{result.stderr}")
    return output


def ensure_qemu_image(client: Any, base_image: str) -> str:
    """``base_image`` plus Debian's QEMU, for boots in Docker; cached by a tag naming its
    Dockerfile's hash, so it is built once per machine."""
    import docker.errors

    dockerfile = QEMU_DOCKERFILE.format(base=base_image)
    tag = "orch-test-qemu:" + hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
    return tag
