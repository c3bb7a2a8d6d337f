"""Build the bare-metal AArch64 console scripts in tests/baremetal/ into ELF images.

``build_scenario("login", out_dir, MEM_TOTAL_MIB=1983)`` runs one plain cross-compiler line
(the same thing tests/baremetal/CMakeLists.txt builds) and returns the ELF's path. Tests that
use it call ``require_tools(*BAREMETAL_TOOLS)`` first.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "baremetal"
CROSS_GCC = "aarch64-linux-gnu-gcc"
BAREMETAL_TOOLS = ("qemu-system-aarch64", CROSS_GCC)
SCENARIOS = ("fail", "login", "silent", "sel4-hang", "poweroff")
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
