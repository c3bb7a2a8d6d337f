"""An end-to-end fixture for `orch build`: a git "server" with a manifest repository and the
two projects of tests/buildfixture.py (a miniature init-build.sh + CMake project that
cross-compiles the bare-metal console program into ``images/capdl-loader-image-arm-qemu-arm-virt``),
made more like vm_minimal so every column of the report has something to read:

- ``kernel/apps/vm_minimal/qemu-arm-virt/devices.camkes`` with ``VM_RAM_SIZE``;
- ``kernel/libsel4vm/src/guest_ram.c`` with ``int page_size = seL4_PageBits;``;
- an ``allocator_mempool`` in the program's .bss, 80 MiB like camkes-vm's default.

and a patchset pair in the seed's shape: ``vm-2g`` (QEMU_MEMORY 2048 and VM_RAM_SIZE 2 GiB:
the baseline fails with the VMM's allocation failure, like the seed) and ``largepage``
(requires vm-2g; 2 MiB frames in guest_ram.c, a 1 MiB pool, and a console that reaches a
Buildroot login answering ``free -m``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tests.support.build import FRAMES, kernel_files, make_patch, make_tools_upstream
from tests.support.git import Upstream, make_manifest_repo, make_upstream

DEVICES = """/* vm_minimal on qemu-arm-virt: the guest's memory map (fixture). */
#define VM_RAM_BASE 0x40000000
#define VM_RAM_SIZE 0x20000000
#define VM_RAM_OFFSET 0x00000000
assembly {
    configuration {
        vm0.untyped_mmios = [ "0x40000000:29" ];
    }
}
"""

GUEST_RAM = """/* libsel4vm's guest RAM allocation (fixture excerpt). */
static vm_frame_t ram_ut_alloc_iterator(uintptr_t addr, void *cookie)
{
    int page_size = seL4_PageBits;
    uintptr_t frame_start = ROUND_DOWN(addr, BIT(page_size));
    return frame_start;
}
"""

POOL_FRAMES = FRAMES + "#define MEMPOOL_SIZE 0x5000000\n"

CHECK_WITH_POOL = """/* Breaks the build on request (-DBREAK_BUILD=1); holds the VMM's allocator pool. */
#ifdef BREAK_BUILD
#error "fixture: broken on purpose"
#endif
int fixture_check;
char allocator_mempool[MEMPOOL_SIZE] __attribute__((aligned(4096)));
"""


def e2e_kernel_files() -> dict[str, str]:
    files = kernel_files()
    files["src/frames.h"] = POOL_FRAMES
    files["src/check.c"] = CHECK_WITH_POOL
    files["apps/vm_minimal/qemu-arm-virt/devices.camkes"] = DEVICES
    files["libsel4vm/src/guest_ram.c"] = GUEST_RAM
    return files


def manifest_xml(kernel: str, tools: str, extra_projects: str = "") -> str:
    """The fixture manifest pinning kernel and tools; ``extra_projects`` (``<project .../>``
    lines) stand between them."""
    return f"""<?xml version="1.0"?>
<manifest>
  <remote name="seL4" fetch="../seL4"/>
  <default remote="seL4" revision="master"/>
  <project name="kernel.git" path="kernel" revision="{kernel}">
    <linkfile src="easy-settings.cmake" dest="easy-settings.cmake"/>
  </project>
{extra_projects}  <project name="tools.git" path="tools/seL4" revision="{tools}">
    <linkfile src="cmake-tool/init-build.sh" dest="init-build.sh"/>
  </project>
</manifest>
"""


@dataclass
class E2EFixture:
    server: Path
    manifest: Upstream
    kernel: Upstream
    tools: Upstream
    patchsets: Path  # a --patchsets directory holding vm-2g and largepage
    workspace: Path  # not synced yet: `orch build -m <manifest>` syncs it

    @property
    def manifest_url(self) -> str:
        return str(self.manifest.bare)


def _write_patchset(directory: Path, toml: str, project: str, file: str, text: str) -> None:
    (directory / project).mkdir(parents=True)
    (directory / project / file).write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    (directory / "patchset.toml").write_text(
        toml + f'\n[projects."{project}"]\npatches = [{{ file = "{file}", sha256 = "{sha}" }}]\n')


LARGEPAGE_TOML = """description = "Map guest RAM with 2 MiB frames so a 2 GiB guest fits a 1 MiB VMM mempool"
requires = ["vm-2g"]

[build]
app = "vm_minimal"
platform = "qemu-arm-virt"
cmake = ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]

[variants.4k]
patchsets = ["vm-2g"]
expect = { verdict = "fail", cause = "vmm-allocation" }

[variants.largepage]
patchsets = ["vm-2g", "largepage"]
expect = { verdict = "pass" }
"""


def make_e2e_upstreams(base: Path, kernel: dict[str, str]) -> tuple[Path, Upstream, Upstream, Upstream]:
    """The git "server" under ``base``: kernel (``kernel`` files), tools and a manifest
    repository pinning both; returns (server, manifest, kernel, tools)."""
    server = base / "git" / "seL4"
    kernel_up = make_upstream(server, "kernel.git", kernel)
    tools = make_tools_upstream(server, "tools.git")
    xml = manifest_xml(kernel_up.head(), tools.head())
    manifest = make_manifest_repo(server, "manifest", {"default.xml": xml})
    return server, manifest, kernel_up, tools


def write_vm2g_and_largepage(sets: Path, kernel: Upstream, largepage_toml: str, *,
                             mempool: bool = True) -> None:
    """The ``vm-2g`` and ``largepage`` patchsets (patches made against ``kernel``) into ``sets``;
    ``mempool``: largepage also sets a 1 MiB allocator pool in devices.camkes."""
    vm2g = make_patch(kernel.scratch, {
        "apps/vm_minimal/settings.cmake": ('QEMU_MEMORY "1024"', 'QEMU_MEMORY "2048"'),
        "apps/vm_minimal/qemu-arm-virt/devices.camkes": ("VM_RAM_SIZE 0x20000000", "VM_RAM_SIZE 0x80000000"),
    }, "vm_minimal: give the guest 2 GiB")
    edits = {
        "src/frames.h": ("#define FRAME_SIZE_BITS 12\n#define SCENARIO SCENARIO_FAIL\n"
                         "#define MEMPOOL_SIZE 0x5000000",
                         "#define FRAME_SIZE_BITS 21\n#define SCENARIO SCENARIO_LOGIN\n"
                         "#define MEMPOOL_SIZE 0x100000"),
        "libsel4vm/src/guest_ram.c": ("seL4_PageBits;", "seL4_LargePageBits;"),
    }
    if mempool:
        edits["apps/vm_minimal/qemu-arm-virt/devices.camkes"] = (
            '"0x40000000:29" ];', '"0x40000000:29" ];\n        vm0.allocator_mempool_size = 0x100000;')
    largepage = make_patch(kernel.scratch, edits, "libsel4vm: map guest RAM with 2M frames")
    _write_patchset(sets / "vm-2g", 'description = "2 GiB guest"\n', "kernel", "0001-vm-2g.patch", vm2g)
    _write_patchset(sets / "largepage", largepage_toml, "kernel", "0001-largepage.patch", largepage)


def make_e2e_fixture(base: Path, *, expectations: bool = True) -> E2EFixture:
    server, manifest, kernel, tools = make_e2e_upstreams(base, e2e_kernel_files())
    sets = base / "patchsets"
    toml = LARGEPAGE_TOML if expectations else LARGEPAGE_TOML.replace(
        'expect = { verdict = "fail", cause = "vmm-allocation" }\n', "").replace(
        'expect = { verdict = "pass" }\n', "")
    write_vm2g_and_largepage(sets, kernel, toml)
    return E2EFixture(server, manifest, kernel, tools, sets, base / "ws")
