"""An imported patchset gets a [build] table (app, platform and CMake options from the files its
patches touch) and a baseline variant without it, so `orch build --patchset NAME` works."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from orchestrator.build.spec import spec_for
from orchestrator.cli import main
from orchestrator.errors import EXIT_OK
from orchestrator.patchset.derive import derive_build

SHIPPED = Path(__file__).resolve().parent.parent / "patchsets"


def test_import_derives_build_and_variants_and_says_so(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    code = main(["patchset", "--patchsets", str(mine), "import", "two", str(SHIPPED / "vm-2g")])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    doc = tomllib.loads((mine / "two" / "patchset.toml").read_text())
    cmake = ["-DCAMKES_VM_APP=vm_minimal", "-DPLATFORM=qemu-arm-virt", "-DAARCH64=1"]
    assert doc["build"] == {"app": "vm_minimal", "platform": "qemu-arm-virt", "cmake": cmake}
    assert doc["variants"] == {"base": {"patchsets": []}, "two": {"patchsets": ["two"]}}
    assert "app vm_minimal, platform qemu-arm-virt" in err and "variants base, two" in err
    from orchestrator.patchset.config import load_patchset
    spec = spec_for(load_patchset("two", [mine]))
    assert [v.name for v in spec.variants] == ["base", "two"] and spec.app == "vm_minimal"


def test_paths_name_the_app_and_platform() -> None:
    derived = derive_build("x86fix", ["base-fix"], ["apps/x86/optiplex9020/settings.cmake"])
    assert derived.build["app"] == "optiplex9020" and "-DAARCH64=1" not in derived.build["cmake"]
    assert derived.variants["base"] == {"patchsets": ["base-fix"]}
    derived = derive_build("o", [], ["apps/Arm/vm_multi/odroidc2/devices.camkes", "README.md"])
    assert (derived.build["app"], derived.build["platform"]) == ("vm_multi", "odroidc2")
    derived = derive_build("k", [], ["src/arch/arm/kernel/vspace.c"])
    assert derived.build["app"] == "vm_minimal" and "shipped" in derived.reason


def test_check_suggests_the_requires_a_patch_was_made_on(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib
    import json

    from tests.support.git import git
    from tests.support.seed import DEVICES, make_seed_server

    ws = tmp_path / "ws"
    assert main(["sync", "-q", "-m", str(make_seed_server(tmp_path)), "-w", str(ws)]) == EXIT_OK
    assert main(["patchset", "apply", "vm-2g", "-w", str(ws)]) == EXIT_OK
    examples = ws / "projects/vm-examples"
    devices = examples / DEVICES
    devices.write_text(devices.read_text().replace("#define VM_RAM_SIZE 0x80000000",
                                                   "#define VM_RAM_SIZE 0x60000000"))
    git(examples, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am",
        "vm_minimal: 1.5 GiB guest")
    patch = git(examples, "format-patch", "-1", "--stdout", "HEAD") + "\n"
    assert main(["patchset", "revert", "--all", "-w", str(ws)]) == EXIT_OK
    mine = tmp_path / "mine" / "smaller"
    (mine / "projects/vm-examples").mkdir(parents=True)
    (mine / "projects/vm-examples/0001-smaller.patch").write_text(patch)
    digest = hashlib.sha256(patch.encode()).hexdigest()
    (mine / "patchset.toml").write_text(
        f'[[projects."projects/vm-examples".patches]]\nfile = "0001-smaller.patch"\nsha256 = "{digest}"\n')
    capsys.readouterr()
    code = main(["patchset", "check", "smaller", "--patchsets", str(mine.parent), "-w", str(ws), "--json"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["suggested_requires"] == ["vm-2g"], "largepage brings vm-2g: vm-2g suffices"
    code = main(["patchset", "check", "smaller", "--patchsets", str(mine.parent), "-w", str(ws)])
    assert code == 1 and 'requires = ["vm-2g"]' in capsys.readouterr().err
