"""The seed's bookkeeping: frames, estimated allocator metadata, and where each input came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.analysis.elf import SymbolHit
from orchestrator.analysis.memory import (
    DEFAULT_MEMPOOL,
    GiB,
    KiB,
    MiB,
    Sourced,
    estimate,
    format_bytes,
    frames_of,
    gather,
    metadata_bytes,
    parse_size,
)
from orchestrator.errors import InputError

DEVICES = """/*
 * Copyright 2019, Data61
 */
#define VM_INITRD_MAX_SIZE 0x1900000 //25 MB
#define VM_RAM_BASE 0x40000000
#define VM_RAM_SIZE 0x80000000
#define VM_RAM_OFFSET 0x00000000
assembly {
    composition {}
    configuration {
        vm0.untyped_mmios = [ "0x40000000:30", ];
        // vm0.allocator_mempool_size = 0x9999999; commented out
%s
    }
}
"""

GUEST_RAM_C = """static vm_frame_t ram_ut_alloc_iterator(uintptr_t addr, void *cookie)
{
    int error;
    int page_size = %s;
    uintptr_t frame_start = ROUND_DOWN(addr, BIT(page_size));
}
"""


def make_tree(root: Path, *, page_size: str = "seL4_PageBits", mempool_line: str = "") -> Path:
    app = root / "projects/vm-examples/apps/Arm/vm_minimal"
    (app / "qemu-arm-virt").mkdir(parents=True)
    (app / "qemu-arm-virt/devices.camkes").write_text(DEVICES % mempool_line)
    (app / "vm_minimal.camkes").write_text("assembly { configuration { vm0.cnode_size_bits = 23; } }\n")
    lib = root / "projects/seL4_projects_libs/libsel4vm/src"
    lib.mkdir(parents=True)
    (lib / "guest_ram.c").write_text(GUEST_RAM_C % page_size)
    return root


def test_the_seeds_numbers() -> None:
    assert frames_of(2 * GiB, 4 * KiB) == 524288
    assert metadata_bytes(524288) == 120 * MiB
    assert frames_of(2 * GiB, 2 * MiB) == 1024
    assert metadata_bytes(1024) == 120 * MiB // 512
    est = estimate(Sourced(2 * GiB, "x"), Sourced(4 * KiB, "y"), Sourced(80 * MiB, "z"))
    assert est.frames == 524288 and est.metadata == 120 * MiB
    assert est.headroom == -40 * MiB and est.fits is False
    big = estimate(Sourced(2 * GiB, "x"), Sourced(2 * MiB, "y"), Sourced(1 * MiB, "z"))
    assert big.fits is True
    assert estimate(None, Sourced(4096, "y"), None).frames is None


def test_frames_round_up() -> None:
    assert frames_of(4097, 4096) == 2
    assert frames_of(4096, 4096) == 1


def test_a_spec_size_that_is_no_size_is_bad_input_naming_the_key() -> None:
    with pytest.raises(InputError, match=r"^memory.frame_size: a frame size must be positive"):
        gather(None, spec={"guest_ram": "2G", "frame_size": 0})
    with pytest.raises(InputError, match=r"^big.memory.guest_ram: expected a size"):
        gather(None, spec={"guest_ram": "lots"}, spec_name="big.memory")


@pytest.mark.parametrize(
    ("text", "value"),
    [("2G", 2 * GiB), ("2GiB", 2 * GiB), ("4K", 4096), ("4 KiB", 4096), ("0x80000000", 2 * GiB),
     ("2097152", 2 * MiB), (4096, 4096), ("1M", MiB), ("80MB", 80 * MiB)],
)
def test_parse_size(text: object, value: int) -> None:
    assert parse_size(text, "memory.guest_ram") == value


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(InputError, match=r"memory.guest_ram: expected a size"):
        parse_size("lots", "memory.guest_ram")
    with pytest.raises(InputError, match=r"^memory.mempool: expected a size"):
        parse_size(True, "memory.mempool")


def test_format_bytes() -> None:
    assert format_bytes(120 * MiB) == "120 MiB"
    assert format_bytes(240 * KiB) == "240 KiB"
    assert format_bytes(2 * GiB) == "2 GiB"
    assert format_bytes(1536 * KiB) == "1.5 MiB"
    assert format_bytes(100 * MiB + 256 * KiB) == "100 MiB"  # no decimals from three digits on
    assert format_bytes(-40 * MiB) == "-40 MiB"
    assert format_bytes(12) == "12 B"
    assert format_bytes(None) == "-"


def test_gather_from_sources_4k(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    est = gather(root)
    assert est.guest_ram == Sourced(
        2 * GiB, "projects/vm-examples/apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes:6"
    )
    assert est.frame_size == Sourced(
        4096, "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c:4 (seL4_PageBits)"
    )
    assert est.mempool is not None and est.mempool.value == DEFAULT_MEMPOOL
    assert est.mempool.source.startswith("default")
    assert est.metadata == 120 * MiB and est.fits is False


def test_gather_largepage_with_configured_pool(tmp_path: Path) -> None:
    root = make_tree(tmp_path, page_size="seL4_LargePageBits",
                     mempool_line="        vm0.allocator_mempool_size = 0x100000; // 1MB")
    est = gather(root)
    assert est.frame_size is not None and est.frame_size.value == 2 * MiB
    devices = "projects/vm-examples/apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes"
    assert est.mempool == Sourced(MiB, f"{devices}:13")
    assert est.frames == 1024 and est.fits is True


def test_spec_and_elf_take_precedence(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    hit = SymbolHit("allocator_mempool", 140 * MiB, 0x1000, "align_12bit", tmp_path / "vm0.instance.bin",
                    "ET_EXEC")
    est = gather(root, spec={"guest_ram": "1G", "frame_size": "2M", "mempool": "1M"}, elf_mempool=hit)
    assert est.guest_ram == Sourced(GiB, "spec: memory.guest_ram")
    assert est.frame_size == Sourced(2 * MiB, "spec: memory.frame_size")
    assert est.mempool == Sourced(140 * MiB, "ELF: vm0.instance.bin (align_12bit)")


def test_gather_without_a_tree_uses_only_the_spec() -> None:
    est = gather(None, spec={"guest_ram": "2G", "frame_size": "4K", "mempool": "80M"})
    assert est.metadata == 120 * MiB and est.mempool == Sourced(80 * MiB, "spec: memory.mempool")
    nothing = gather(None)
    assert nothing.frames is None and nothing.mempool is None and nothing.fits is None


def test_frame_size_is_the_untyped_iterators_not_the_first_in_the_file(tmp_path: Path) -> None:
    """Upstream's guest_ram.c has ``ram_alloc_iterator`` (4 KiB) before ``ram_ut_alloc_iterator``;
    the largepage patch changes only the latter, which is the one the bookkeeping is about."""
    root = make_tree(tmp_path, page_size="seL4_LargePageBits")
    guest_ram = root / "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c"
    other = ("static vm_frame_t ram_ut_alloc_iterator(uintptr_t addr, void *cookie);\n"
             "static vm_frame_t ram_alloc_iterator(uintptr_t addr, void *cookie)\n"
             "{\n    int page_size = seL4_PageBits;\n}\n\n")
    guest_ram.write_text(other + guest_ram.read_text())
    est = gather(root)
    assert est.frame_size == Sourced(
        2 * MiB, "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c:10 (seL4_LargePageBits)"
    )
    assert est.frames == 1024


def test_sources_are_read_whatever_their_encoding_and_comments_are_ignored(tmp_path: Path) -> None:
    root = make_tree(tmp_path, page_size="seL4_LargePageBits")
    guest_ram = root / "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c"
    text = guest_ram.read_text().replace(
        "{\n", "{\n    // int page_size = seL4_HugePageBits; // tried 1 GiB frames \xe9t\xe9\n", 1)
    guest_ram.write_bytes(text.encode("latin-1"))  # not UTF-8
    est = gather(root)
    assert est.frame_size == Sourced(
        2 * MiB, "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c:5 (seL4_LargePageBits)")


def test_a_numeric_page_size_is_bits(tmp_path: Path) -> None:
    est = gather(make_tree(tmp_path, page_size="21"))
    assert est.frame_size == Sourced(2 * MiB, "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c:4 (21)")


def test_without_the_untyped_iterator_the_first_page_size_in_the_file_counts(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    guest_ram = root / "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c"
    guest_ram.write_text("int page_size = seL4_LargePageBits;\nvoid f(void) {\n"
                         "    int page_size = seL4_PageBits;\n}\n")  # an older libsel4vm
    est = gather(root)
    assert est.frame_size == Sourced(
        2 * MiB, "projects/seL4_projects_libs/libsel4vm/src/guest_ram.c:1 (seL4_LargePageBits)")


def test_the_first_ram_size_define_counts(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    devices = root / "projects/vm-examples/apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes"
    devices.write_text("#define VM_RAM_SIZE 0x40000000\n#else\n" + devices.read_text())
    assert gather(root).guest_ram == Sourced(
        GiB, "projects/vm-examples/apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes:1")


def test_the_pool_may_be_set_in_the_apps_own_camkes_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    app = root / "projects/vm-examples/apps/Arm/vm_minimal/vm_minimal.camkes"
    app.write_text("assembly { configuration {\n    vm0.allocator_mempool_size = 0x8000000;\n} }\n")
    assert gather(root).mempool == Sourced(
        128 * MiB, "projects/vm-examples/apps/Arm/vm_minimal/vm_minimal.camkes:2")


@pytest.mark.parametrize(("app_dir", "lib_dir"), [
    ("projects/vm-examples/apps/vm_minimal", "projects/libs/libsel4vm/src"),
    ("vm-examples/apps/Arm/vm_minimal", "seL4_projects_libs/libsel4vm/src"),
    ("vm-examples/apps/vm_minimal", "seL4_projects_libs/libsel4vm/src"),
    ("apps/Arm/vm_minimal", "libsel4vm/src"),
    ("apps/vm_minimal", "libsel4vm/src"),
])
def test_sources_are_found_in_every_tree_layout(tmp_path: Path, app_dir: str, lib_dir: str) -> None:
    (tmp_path / app_dir / "qemu-arm-virt").mkdir(parents=True)
    (tmp_path / app_dir / "qemu-arm-virt/devices.camkes").write_text(DEVICES % "")
    (tmp_path / lib_dir).mkdir(parents=True)
    (tmp_path / lib_dir / "guest_ram.c").write_text(GUEST_RAM_C % "seL4_LargePageBits")
    est = gather(tmp_path)
    assert est.guest_ram == Sourced(2 * GiB, f"{app_dir}/qemu-arm-virt/devices.camkes:6")
    assert est.frame_size == Sourced(2 * MiB, f"{lib_dir}/guest_ram.c:4 (seL4_LargePageBits)")


def test_an_app_directory_without_the_platform_does_not_hide_one_with_it(tmp_path: Path) -> None:
    (tmp_path / "projects/a/apps/Arm/vm_minimal/other-platform").mkdir(parents=True)
    (tmp_path / "projects/a/apps/Arm/vm_minimal/other-platform/devices.camkes").write_text(DEVICES % "")
    (tmp_path / "projects/b/apps/vm_minimal/qemu-arm-virt").mkdir(parents=True)
    (tmp_path / "projects/b/apps/vm_minimal/qemu-arm-virt/devices.camkes").write_text(DEVICES % "")
    est = gather(tmp_path)
    assert est.guest_ram == Sourced(2 * GiB, "projects/b/apps/vm_minimal/qemu-arm-virt/devices.camkes:6")


def test_an_app_without_the_platform_gets_no_default_pool(tmp_path: Path) -> None:
    (tmp_path / "apps/vm_minimal/other-platform").mkdir(parents=True)
    (tmp_path / "apps/vm_minimal/other-platform/devices.camkes").write_text(DEVICES % "")
    est = gather(tmp_path)
    assert est.guest_ram is None and est.mempool is None and est.fits is None
