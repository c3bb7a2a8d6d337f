"""The end-to-end fixture for `orch sweep` and parameters: the e2e workspace of
tests/support/e2e.py whose "VMM" (the bare-metal console program's VMM scenario) fails with
the seed's allocation failure when its pool is below frames x 256 B + 512 KiB and reaches a
login otherwise. The pool (``vm0.allocator_mempool_size``, default 80 MiB when absent) and
the guest RAM (``VM_RAM_SIZE``) are read from devices.camkes at build time into a generated
header that only ``src/vmm.c`` includes, so a probe that changes them recompiles that one
file; the frame size is ``FRAME_SIZE_BITS`` in ``src/frames.h`` (every file includes it).

A patchset ``sweep`` declares three parameters: ``mempool`` (inserted after the untyped
MMIO line when absent), ``ram`` (VM_RAM_SIZE, the untyped MMIO list, QEMU_MEMORY in
settings.cmake, with derived values) and ``frames`` (frames.h and guest_ram.c). The minimum
pool is therefore ceil((RAM / frame x 256 + 512 KiB) / step) x step: 33 MiB for 512 MiB at
4 KiB frames, 65 MiB for 1 GiB, 1 MiB at 2 MiB frames.
"""

from __future__ import annotations

import math
from pathlib import Path

from tests.support.build import KERNEL_CMAKE
from tests.support.e2e import E2EFixture, _write_patchset, e2e_kernel_files, make_e2e_upstreams

FRAME_COST = 256
POOL_OVERHEAD = 512 * 1024
MiB = 1024 * 1024

SWEEP_CMAKE = KERNEL_CMAKE.replace(
    "add_executable(console.elf baremetal/console.c baremetal/start.S src/check.c)",
    """set(vmm_config ${CMAKE_BINARY_DIR}/vmm_config.h)
set(devices ${CMAKE_CURRENT_LIST_DIR}/apps/${CAMKES_VM_APP}/${PLATFORM}/devices.camkes)
if(NOT GLITCH_POOL)
    set(GLITCH_POOL 0)
endif()
add_custom_command(OUTPUT ${vmm_config}
    COMMAND ${CMAKE_COMMAND} -DIN=${devices} -DOUT=${vmm_config} -DGLITCH=${GLITCH_POOL}
        -P ${CMAKE_CURRENT_LIST_DIR}/src/vmm_config.cmake
    DEPENDS ${devices} ${CMAKE_CURRENT_LIST_DIR}/src/vmm_config.cmake)
add_executable(console.elf baremetal/console.c baremetal/start.S src/check.c src/vmm.c ${vmm_config})
set_source_files_properties(src/vmm.c PROPERTIES OBJECT_DEPENDS ${vmm_config})
target_include_directories(console.elf PRIVATE ${CMAKE_BINARY_DIR})""")

VMM_CONFIG_CMAKE = """# Reads the guest RAM and the allocator pool from devices.camkes (as CAmkES would).
file(READ ${IN} text)
string(REGEX MATCH "#define VM_RAM_SIZE (0x[0-9a-fA-F]+|[0-9]+)" found "${text}")
set(ram ${CMAKE_MATCH_1})
set(pool 0x5000000)
string(REGEX MATCH "allocator_mempool_size = (0x[0-9a-fA-F]+|[0-9]+)" found "${text}")
if(found)
    set(pool ${CMAKE_MATCH_1})
endif()
file(WRITE ${OUT} "#define FIXTURE_VM_RAM_SIZE ${ram}UL\\n")
file(APPEND ${OUT} "#define FIXTURE_MEMPOOL_SIZE ${pool}UL\\n#define FIXTURE_GLITCH_POOL ${GLITCH}UL\\n")
"""

VMM_C = """/* The VMM's configuration as the build generated it from devices.camkes. */
#include "vmm_config.h"
const unsigned long fixture_vm_ram_size = FIXTURE_VM_RAM_SIZE;
const unsigned long fixture_mempool_size = FIXTURE_MEMPOOL_SIZE;
const unsigned long fixture_glitch_pool = FIXTURE_GLITCH_POOL;
"""

FRAMES_VMM = """/* Guest RAM frame size, and the console script: the VMM's allocator decides. */
#define FRAME_SIZE_BITS 12
#define SCENARIO SCENARIO_VMM
#define MEMPOOL_SIZE 0x100000
"""

SWEEP_TOML = r'''description = "Parameters of the fixture's VMM: pool, guest RAM, frame size"

[build]
app = "vm_minimal"
platform = "qemu-arm-virt"
cmake = ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]

[variants.vmm]
patchsets = []

[params.mempool]
file = "kernel/apps/vm_minimal/qemu-arm-virt/devices.camkes"
pattern = 'vm0\.allocator_mempool_size = (0x[0-9a-fA-F]+|\d+);'
format = "0x{value:x}"
insert_after = 'vm0\.untyped_mmios'
line = "        vm0.allocator_mempool_size = 0x{value:x};"
default = "80M"

[params.ram]
default = "512M"
[params.ram.derive]
qemu_mib = "value // MiB + 1024"
mmios = "blocks(0x40000000, value, 30)"
[[params.ram.edit]]
file = "kernel/apps/vm_minimal/qemu-arm-virt/devices.camkes"
pattern = '#define VM_RAM_SIZE (0x[0-9a-fA-F]+|\d+)'
format = "0x{value:x}"
[[params.ram.edit]]
file = "kernel/apps/vm_minimal/qemu-arm-virt/devices.camkes"
pattern = 'untyped_mmios = \[ (.*) \];'
format = "{mmios}"
[[params.ram.edit]]
file = "kernel/apps/vm_minimal/settings.cmake"
pattern = 'QEMU_MEMORY "(\d+)"'
format = "{qemu_mib}"

[params.frames]
default = "4K"
[params.frames.derive]
bits = "log2(value)"
token = "'seL4_PageBits' if value == 4 * KiB else 'seL4_LargePageBits'"
[[params.frames.edit]]
file = "kernel/src/frames.h"
pattern = '#define FRAME_SIZE_BITS (\d+)'
format = "{bits}"
[[params.frames.edit]]
file = "kernel/libsel4vm/src/guest_ram.c"
pattern = 'page_size = (seL4_\w+);'
format = "{token}"
'''


def sweep_kernel_files() -> dict[str, str]:
    files = e2e_kernel_files()
    files["CMakeLists.txt"] = SWEEP_CMAKE
    files["src/frames.h"] = FRAMES_VMM
    files["src/vmm.c"] = VMM_C
    files["src/vmm_config.cmake"] = VMM_CONFIG_CMAKE
    return files


def expected_minimum(ram: int, frame: int, step: int = MiB) -> int:
    """The fixture VMM's smallest passing pool at ``step`` resolution."""
    need = ram // frame * FRAME_COST + POOL_OVERHEAD
    return math.ceil(need / step) * step


def make_sweep_fixture(base: Path) -> E2EFixture:
    """Upstreams, a manifest and the ``sweep`` patchset (workspace not synced: ``-m``)."""
    server, manifest, kernel, tools = make_e2e_upstreams(base, sweep_kernel_files())
    sets = base / "patchsets"
    (sets / "sweep").mkdir(parents=True)
    (sets / "sweep" / "patchset.toml").write_text(SWEEP_TOML)
    return E2EFixture(server, manifest, kernel, tools, sets, base / "ws")


__all__ = ["E2EFixture", "_write_patchset", "expected_minimum", "make_sweep_fixture"]
