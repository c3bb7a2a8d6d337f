"""Parameters as data ([params.NAME] in patchset.toml): parsing, the edits a value makes
(replace, insert when absent, several files with derived values), the generated commit in a
variant tree, content-keyed caching, incremental rebuilds, and `orch build --set`."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.build.builder import BuildContext, build_variant
from orchestrator.build.spec import override, spec_for
from orchestrator.errors import InputError
from orchestrator.patchset.apply import load_patchset
from orchestrator.patchset.params import Edit, blocks, edit_text, evaluate, names_for, parse_params
from orchestrator.runtime import make_runtime
from orchestrator.ui import UI
from orchestrator.workspace.sync import Workspace
from tests.conftest import require_tools
from tests.support.git import git
from tests.support.sweep import SWEEP_TOML, make_sweep_fixture

MiB = 1024 * 1024
DEVICES = "apps/vm_minimal/qemu-arm-virt/devices.camkes"


def _params() -> dict[str, object]:
    import tomllib

    return dict(tomllib.loads(SWEEP_TOML)["params"])


def test_parse_and_derive() -> None:
    params = parse_params(_params(), "sweep/patchset.toml")
    assert set(params) == {"mempool", "ram", "frames"}
    assert params["mempool"].default == 80 * MiB and len(params["ram"].edits) == 3
    names = names_for(params["ram"], 2 << 30)
    assert names["qemu_mib"] == 2048 + 1024
    assert names["mmios"] == '"0x40000000:30", "0x80000000:30"'
    assert names_for(params["frames"], 2 * MiB)["token"] == "seL4_LargePageBits"
    assert names_for(params["frames"], 4096)["bits"] == 12


def test_blocks_are_aligned_powers_of_two() -> None:
    assert blocks(0x40000000, 512 * MiB, 30) == '"0x40000000:29"'
    assert blocks(0x40000000, 3 << 30, 30) == '"0x40000000:30", "0x80000000:30", "0xc0000000:30"'
    assert blocks(0x40000000, 768 * MiB, 30) == '"0x40000000:29", "0x60000000:28"'


@pytest.mark.parametrize("expression", ["__import__('os')", "value.__class__", "open('x')", "[1][0]"])
def test_expressions_are_arithmetic_only(expression: str) -> None:
    with pytest.raises(InputError, match=r"not allowed|unknown name"):
        evaluate(expression, {"value": 1}, "derive.x")


@pytest.mark.parametrize("table, message", [
    ({"p": {"file": "a/b", "pattern": "("}}, "invalid regular expression"),
    ({"p": {"file": "../b", "pattern": "x"}}, "leaves its project"),
    ({"p": {"pattern": "x"}}, "no edits"),
    ({"p": {"file": "a/b", "insert_after": "x"}}, "needs line"),
    ({"p": {"file": "a/b", "pattern": "x", "colour": 1}}, "unknown key 'colour'"),
    ({"p": {"file": "a/b", "pattern": "x", "derive": {"y": "1 +"}}}, "not an expression"),
])
def test_bad_params_name_the_file_and_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_params(table, "ps/patchset.toml")
    assert caught.value.message.startswith("ps/patchset.toml: [params.p]")


def test_edit_replaces_or_inserts() -> None:
    text = "a\n    vm0.untyped_mmios = [ x ];\n}\n"
    edit = Edit("k/f", r"pool = (\d+);", "{value}", insert_after=r"untyped_mmios", line="    pool = {value};")
    inserted = edit_text(text, edit, {"value": 5}, "[params.p]")
    assert inserted == "a\n    vm0.untyped_mmios = [ x ];\n    pool = 5;\n}\n"
    assert edit_text(inserted, edit, {"value": 7}, "[params.p]").count("pool = 7;") == 1
    with pytest.raises(InputError, match="matches nothing in k/f"):
        edit_text("nothing here", Edit("k/f", "pool", "{value}"), {"value": 1}, "[params.p]")


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Workspace, Path]:
    fx = make_sweep_fixture(tmp_path)
    workspace = Workspace(fx.workspace)
    fx.workspace.mkdir()
    from orchestrator.workspace.sync import ManifestSource

    workspace.sync(ManifestSource.parse(fx.manifest_url))
    return workspace, fx.patchsets


def test_parameter_commit_rebuilds_only_the_edited_file(synced: tuple[Workspace, Path]) -> None:
    require_tools("cmake", "ninja", "aarch64-linux-gnu-gcc")
    workspace, patchsets = synced
    spec = spec_for(load_patchset("sweep", [patchsets]))
    ctx = BuildContext(root=workspace.root, tree=workspace.tree(), spec=spec,
                       runtime=make_runtime("host", ""), ui=UI.silent())

    def build(*values: str):  # type: ignore[no-untyped-def]
        chosen = override(spec, params=list(values))
        return build_variant(replace(ctx, spec=chosen), chosen.variants[0], [])

    first = build("mempool=40M")
    assert first.ok and first.metadata["configured"] and first.metadata["params"] == {"mempool": 40 * MiB}
    kernel = workspace.root / ".orch/variants/vmm/src/kernel"
    assert "vm0.allocator_mempool_size = 0x2800000;" in (kernel / DEVICES).read_text()
    subject = git(kernel, "log", "-1", "--format=%s %an")
    assert subject == "orch params: mempool=40 MiB orch"
    console_obj = next((workspace.root / ".orch/variants/vmm/build").rglob("console.c.obj"))
    before = console_obj.stat().st_mtime_ns

    second = build("mempool=48M")
    assert second.ok and not second.cached and second.metadata["configured"] is False
    assert "vm0.allocator_mempool_size = 0x3000000;" in (kernel / DEVICES).read_text()
    assert console_obj.stat().st_mtime_ns == before  # only vmm.c recompiled
    log = second.log.read_text()
    assert "vmm.c" in log and "console.c.obj" not in log
    assert git(kernel, "rev-list", "--count", "HEAD") == "2"  # one generated commit, not stacked

    again = build("mempool=40M")
    assert again.cached and again.output_dir == first.output_dir  # keyed by content
    none = build()
    assert none.ok and "allocator_mempool_size" not in (kernel / DEVICES).read_text()
    assert not any(b.startswith("refs/orch/backup") for b in
                   git(kernel, "for-each-ref", "--format=%(refname)").split())  # never taken for user work


def test_set_unknown_parameter_is_one_line(synced: tuple[Workspace, Path]) -> None:
    _workspace, patchsets = synced
    spec = spec_for(load_patchset("sweep", [patchsets]))
    with pytest.raises(InputError, match="no parameter 'pool' in the patchset") as caught:
        override(spec, params=["pool=1M"])
    assert caught.value.hint and "mempool" in caught.value.hint
    with pytest.raises(InputError, match="expected a size"):
        override(spec, params=["mempool=lots"])


@pytest.mark.qemu
def test_orch_build_set_builds_one_point(synced: tuple[Workspace, Path], capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools("cmake", "ninja", "aarch64-linux-gnu-gcc", "qemu-system-aarch64")
    from orchestrator.cli import main

    workspace, patchsets = synced
    monkeypatch.setenv("COLUMNS", "200")
    base = ["build", "--patchset", "sweep", "--patchsets", str(patchsets), "-w", str(workspace.root),
            "--executor", "host"]
    assert main([*base, "--set", "mempool=32M"]) == 1  # 512 MiB / 4 KiB x 256 B + 512 KiB > 32 MiB
    out = capsys.readouterr().out
    assert "FAIL (vmm-allocation)" in out
    assert main([*base, "--set", "mempool=33M", "--set", "ram=512M"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert os.path.isdir(workspace.root / ".orch/variants/vmm/build")


@pytest.mark.parametrize("chain", [["vm-2g"], ["vm-2g", "largepage"]])
def test_shipped_parameters_edit_the_real_files(tmp_path: Path, chain: list[str]) -> None:
    """largepage's [params] on the seed's files (the upstream pre-images) with its patches
    applied: a 3 GiB guest at 2 MiB frames with a 140 MiB pool, like the seed's by-hand edit."""
    from orchestrator.patchset.apply import apply
    from orchestrator.patchset.params import Setting, apply_values
    from orchestrator.shipped import shipped_dir
    from tests.support.seed import DTS, GUEST_RAM, SETTINGS, VM_MINIMAL, make_seed_tree

    tree = make_seed_tree(tmp_path)
    shipped = [shipped_dir("patchsets")]
    apply(tree, [load_patchset(name, shipped) for name in chain])
    params = spec_for(load_patchset("largepage", shipped)).params
    heads = apply_values(tree, params, [Setting("ram", 3 << 30), Setting("mempool", 140 * MiB),
                                        Setting("frames", 2 * MiB), Setting("cnode_bits", 18)])
    # a project the values leave as it is gets no commit (largepage already has 2 MiB frames)
    assert set(heads) == {"kernel", "projects/vm-examples"} | (
        {"projects/seL4_projects_libs"} if "largepage" not in chain else set())
    examples = tree.projects["projects/vm-examples"].directory
    devices = (examples / "apps/Arm/vm_minimal/qemu-arm-virt/devices.camkes").read_text()
    assert "#define VM_RAM_SIZE 0xc0000000" in devices
    assert devices.count('"0x40000000:30",') == 1
    assert '"0xc0000000:30", // Linux kernel memory regions' in devices
    assert '"0x80000000:30",\n' in devices and '"0x8040000:12"' in devices
    assert devices.count("vm0.allocator_mempool_size = 0x8c00000;") == 1
    assert devices.index("vm0.allocator_mempool_size") > devices.index("];")
    assert 'set(QEMU_MEMORY "6144")' in (examples / SETTINGS).read_text()
    assert "vm0.cnode_size_bits = 18;" in (examples / VM_MINIMAL).read_text()
    kernel = tree.projects["kernel"].directory
    assert "reg = <0x0 0x40000000 0x0 0xc0000000>;" in (kernel / DTS).read_text()
    guest_ram = (tree.projects["projects/seL4_projects_libs"].directory / GUEST_RAM).read_text()
    assert "PAGE_ALIGN_2M(current_addr)" in guest_ram and "PAGE_SIZE_2M;" in guest_ram
    assert "int page_size = seL4_LargePageBits;" in guest_ram and "seL4_PageBits" not in guest_ram
