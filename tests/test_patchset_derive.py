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
