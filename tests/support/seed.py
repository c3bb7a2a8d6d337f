"""Fixture projects for the seed's three repositories (kernel, seL4_projects_libs, vm-examples).

Each file holds exactly the pre-image the seed's hunks need (their context and removed lines),
at the line numbers the seed's hunk headers give, plus the line git picks as the hunk's
function context; every other line is a numbered comment filler. So the shipped patchsets
apply here without offset. Their ``index`` lines name the real upstream blobs they were made
against, which these files are not: a test that needs a three-way merge rewrites them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.workspace.tree import ProjectCheckout, SourceTree
from tests.support.git import Upstream, git, make_manifest_repo, make_upstream


def _compose(length: int, filler: str, blocks: dict[int, list[str]]) -> str:
    """A ``length``-line file: ``blocks`` (first line number -> lines) over numbered filler."""
    lines = [filler.format(n=n) for n in range(1, length + 1)]
    for start, block in blocks.items():
        lines[start - 1 : start - 1 + len(block)] = block
    return "\n".join(lines[:length]) + "\n"


DTS = "src/plat/qemu-arm-virt/overlay-reserve-vm-memory.dts"
GUEST_RAM = "libsel4vm/src/guest_ram.c"
DEVICES = "apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes"
SETTINGS = "apps/Arm/vm_minimal/settings.cmake"
VM_MINIMAL = "apps/Arm/vm_minimal/vm_minimal.camkes"

C_FILLER = "/* fixture line {n} */"


def kernel_files() -> dict[str, str]:
    return {
        DTS: _compose(21, C_FILLER, {
            7: ["/ {"],
            10: ["\treserved-memory {"],
            13: [
                "\t\tranges;",
                "",
                "\t\tvm-memory@40000000 {",
                "\t\t\treg = <0x0 0x40000000 0x0 0x20000000>;",
                "\t\t\tno-map;",
                "\t\t};",
                "\t};",
            ],
            21: ["};"],
        }),
    }


def projects_libs_files() -> dict[str, str]:
    return {
        GUEST_RAM: _compose(300, C_FILLER, {
            160: [
                "int vm_ram_touch(vm_t *vm, uintptr_t addr, size_t size, "
                "ram_touch_callback_fn touch_callback, void *cookie)",
                "{",
            ],
            169: [
                "    access_cookie.data = cookie;",
                "    access_cookie.vm = vm;",
                "    for (current_addr = addr; current_addr < end_addr; current_addr = next_addr) {",
                "        uintptr_t current_aligned = PAGE_ALIGN_4K(current_addr);",
                "        uintptr_t next_page_start = current_aligned + PAGE_SIZE_4K;",
                "        next_addr = MIN(end_addr, next_page_start);",
                "        access_cookie.size = next_addr - current_addr;",
                "        access_cookie.offset = current_addr - addr;",
                "        access_cookie.current_addr = current_addr;",
                "        int result = vspace_access_page_with_callback(&vm->mem.vm_vspace, "
                "&vm->mem.vmm_vspace, (void *)current_aligned,",
                "                                                      seL4_PageBits, seL4_AllRights, 1, "
                "touch_access_callback, &access_cookie);",
                "        if (result) {",
                "            return result;",
                "        }",
            ],
            183: ["    }", "    return 0;", "}"],
            280: ["static vm_frame_t ram_ut_alloc_iterator(uintptr_t addr, void *cookie)", "{"],
            289: [
                "    if (!vm) {",
                "        return frame_result;",
                "    }",
                "    int page_size = seL4_PageBits;",
                "    uintptr_t frame_start = ROUND_DOWN(addr, BIT(page_size));",
                "    cspacepath_t path;",
                "    error = vka_cspace_alloc_path(vm->vka, &path);",
            ],
            298: ["    return frame_result;", "}"],
        }),
    }


def vm_examples_files() -> dict[str, str]:
    return {
        DEVICES: _compose(45, C_FILLER, {
            8: [
                "",
                "#define VM_INITRD_MAX_SIZE 0x1900000 //25 MB",
                "#define VM_RAM_BASE 0x40000000",
                "#define VM_RAM_SIZE 0x20000000",
                "#define VM_RAM_OFFSET 0x00000000",
                "#define VM_DTB_ADDR 0x4F000000",
                "#define VM_INITRD_ADDR 0x4D700000",
            ],
            30: ["assembly {", "\tconfiguration {"],
            39: [
                "",
                "        vm0.untyped_mmios = [",
                '                    "0x8040000:12", // Interrupt Controller Virtual CPU interface '
                "(Virtual Machine view)",
                '                    "0x40000000:29", // Linux kernel memory regions',
                "                    ];",
                "\t}",
                "}",
            ],
        }),
        SETTINGS: _compose(40, "# fixture line {n}", {
            30: ['if(${PLATFORM} STREQUAL "odroidc2")'],
            32: [
                "endif()",
                'if(${PLATFORM} STREQUAL "qemu-arm-virt")',
                "    # force cpu",
                '    set(QEMU_MEMORY "2048")',
                '    set(KernelArmCPU cortex-a53 CACHE STRING "" FORCE)',
                '    set(VmInitRdFile ON CACHE BOOL "" FORCE)',
                "endif()",
            ],
        }),
        VM_MINIMAL: _compose(30, C_FILLER, {
            15: ["assembly {", "    configuration {"],
            24: [
                "",
                "        vm0.num_extra_frame_caps = 0;",
                "        vm0.extra_frame_map_address = 0;",
                "        vm0.cnode_size_bits = 23;",
                "        vm0.simple_untyped24_pool = 12;",
                "    }",
                "}",
            ],
        }),
    }


@dataclass(frozen=True)
class SeedProject:
    name: str  # the repository name in the manifest, e.g. "seL4.git"
    path: str  # the manifest path, e.g. "kernel"
    files: dict[str, str]


def seed_projects() -> list[SeedProject]:
    """The three projects the seed's patch touches, in manifest order."""
    return [
        SeedProject("seL4.git", "kernel", kernel_files()),
        SeedProject("seL4_projects_libs.git", "projects/seL4_projects_libs", projects_libs_files()),
        SeedProject("camkes-vm-examples.git", "projects/vm-examples", vm_examples_files()),
    ]


def make_seed_upstreams(server: Path) -> dict[str, Upstream]:
    """Bare upstreams under ``server`` for the seed's projects, keyed by manifest path."""
    return {p.path: make_upstream(server, p.name, p.files) for p in seed_projects()}


def seed_manifest_xml(fetch: str = "../seL4") -> str:
    """A ``repo`` manifest pinning the seed projects to the upstreams' master heads by branch."""
    projects = "\n".join(
        f'  <project name="{p.name}" path="{p.path}" revision="master"/>' for p in seed_projects()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest>\n'
        f'  <remote name="seL4" fetch="{fetch}"/>\n'
        '  <default remote="seL4" revision="master"/>\n'
        f"{projects}\n</manifest>\n"
    )


def make_seed_server(base: Path) -> Path:
    """``base/git/seL4/{seL4.git, ..., manifest}``: upstreams plus a manifest repository whose
    remote is relative (``fetch="../seL4"``), like camkes-vm-examples-manifest. Returns the
    manifest repository, ready for ``orch sync -m``."""
    server = base / "git" / "seL4"
    make_seed_upstreams(server)
    return make_manifest_repo(server, "manifest", {"default.xml": seed_manifest_xml()}).bare


def clone_tree(root: Path, upstreams: dict[str, Upstream]) -> SourceTree:
    """Check the upstreams out under ``root`` the way a synced workspace does: git dirs in
    ``.orch/projects/<path>.git``, checkouts with a ``.git`` gitfile, detached at the pin."""
    projects: dict[str, ProjectCheckout] = {}
    for path, up in upstreams.items():
        gitdir = root / ".orch" / "projects" / f"{path}.git"
        checkout = root / path
        gitdir.parent.mkdir(parents=True, exist_ok=True)
        checkout.parent.mkdir(parents=True, exist_ok=True)
        git(root, "clone", "-q", "--separate-git-dir", str(gitdir), str(up.bare), str(checkout))
        pinned = up.head()
        git(checkout, "checkout", "-q", "--detach", pinned)
        git(checkout, "branch", "-q", "-D", "master")
        projects[path] = ProjectCheckout(path=path, directory=checkout, pinned=pinned)
    return SourceTree(root=root, projects=projects)


def make_seed_tree(base: Path) -> SourceTree:
    """Upstreams under ``base/server`` and a synced-looking tree under ``base/ws``."""
    upstreams = make_seed_upstreams(base / "server")
    return clone_tree(base / "ws", upstreams)


def worktree_tree(tree: SourceTree, root: Path) -> SourceTree:
    """A tree of detached ``git worktree``s of ``tree``'s checkouts at their pins, under ``root``
    (the way a variant tree shares the workspace's repositories)."""
    projects = {}
    for path, checkout in tree.projects.items():
        target = root / path
        git(checkout.directory, "worktree", "add", "-q", "--detach", str(target), checkout.pinned)
        projects[path] = ProjectCheckout(path, target, checkout.pinned)
    return SourceTree(root, projects)
